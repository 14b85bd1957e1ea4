// The officers' quorum dashboard: starts from the server's state, then applies live updates.
(() => {
  "use strict";
  const root = document.getElementById("dashboard");
  if (!root) return;

  const sessionId = Number(root.dataset.sessionId);
  const $ = (id) => document.getElementById(id);
  const socket = io("/live");
  let latest = null;
  let scheduled = false;

  function setLive(ok, message) {
    $("live").classList.toggle("offline", !ok);
    $("live-text").textContent = message;
  }

  function threshold(tile, status, reached) {
    tile.classList.toggle("met", reached);
    tile.classList.toggle("unmet", !reached);
    status.textContent = reached ? "Reached" : "Not reached";
  }

  function render() {
    scheduled = false;
    const s = latest;
    $("in-force").textContent = s.parties_in_force;
    $("present").textContent = s.parties_present;
    $("present-count").textContent = `(${s.parties_present})`;
    $("participants").textContent = `${s.participants_present} participant${s.participants_present === 1 ? "" : "s"} present`;
    $("needed-open").textContent = s.needed_to_open;
    $("needed-decide").textContent = s.needed_to_decide;
    $("credentials").textContent = s.credentials_accepted;
    threshold($("open-tile"), $("open-status"), s.can_open);
    threshold($("decide-tile"), $("decide-status"), s.can_decide);

    for (const form of document.querySelectorAll("form[data-allowed-from]")) {
      form.hidden = !form.dataset.allowedFrom.split(" ").includes(s.state);
    }
    const badge = $("session-state").querySelector(".badge");
    badge.className = `badge state-${s.state}`;
    badge.textContent = s.state;

    const list = $("party-list");
    list.replaceChildren(
      ...(s.present_parties.length
        ? s.present_parties.map((p) => {
            const li = document.createElement("li");
            const code = document.createElement("span");
            code.className = "code";
            code.textContent = p.code;
            const group = document.createElement("small");
            group.className = "muted";
            group.textContent = p.regional_group || "";
            li.append(code, ` ${p.name} `, group);
            return li;
          })
        : [Object.assign(document.createElement("li"), { className: "muted empty", textContent: "No Party is present yet." })]),
    );
  }

  // Bursts of updates are drawn once per frame, with the latest state only.
  function apply(state) {
    if (state.session_id !== sessionId) return;
    latest = state;
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(render);
    }
  }

  socket.on("connect", () => {
    socket.emit("watch_session", { session_id: sessionId }, (ack) => {
      if (ack.ok) {
        setLive(true, "live");
        apply(ack.state);
      } else {
        setLive(false, ack.error.message);
      }
    });
  });
  socket.on("disconnect", () => setLive(false, "reconnecting…"));
  socket.on("connect_error", () => setLive(false, "offline, retrying…"));
  socket.on("quorum_updated", apply);
  socket.on("session_ended", () => {
    socket.disconnect();
    setLive(false, "logged out: reload the page to log in again");
  });
})();
