// The officers' quorum dashboard: starts from the state the page was rendered with, applies live
// updates (drawn at most once per frame, latest state only), and resyncs from the server when it
// says (every 30 s; less often when a crowd watches the session) and on every reconnect, so that a
// lost update cannot leave it wrong for long.
(() => {
  "use strict";
  const root = document.getElementById("dashboard");
  if (!root) return;

  const RESYNC_MS = 30000;
  const STATUS_LABELS = { online: "Online", in_person: "In room", both: "In room + online", absent: "Absent" };
  const CREDENTIALS_LABELS = {
    accepted: "credentials accepted",
    original: "original credentials",
    copy: "copy of credentials",
  };
  const GROUPS = [
    ["African", "African"],
    ["Asia-Pacific", "Asia-Pacific"],
    ["Eastern European", "Eastern European"],
    ["GRULAC", "GRULAC"],
    ["WEOG", "WEOG"],
    [null, "No group"],
  ];
  const THRESHOLDS = [
    ["open", "can_open", "needed_to_open", "to open the session"],
    ["decide", "can_decide", "needed_to_decide", "to take decisions"],
  ];

  const sessionId = Number(root.dataset.sessionId);
  const $ = (id) => document.getElementById(id);
  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const timeFormat = new Intl.DateTimeFormat("en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    timeZone: root.dataset.timezone,
  });
  const secondsFormat = new Intl.DateTimeFormat("en-GB", {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    timeZone: root.dataset.timezone,
  });
  // Ticks on round times (a minute to six hours apart), as many as the chart's width allows.
  const TICK_MINUTES = [1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360];
  function roundTicks(scale) {
    const wanted = scale.width < 500 ? 4 : 8;
    const range = scale.max - scale.min;
    const step = 60000 * (TICK_MINUTES.find((m) => range / (m * 60000) <= wanted) || TICK_MINUTES.at(-1));
    const ticks = [];
    for (let value = Math.ceil(scale.min / step) * step; value <= scale.max; value += step) ticks.push({ value });
    scale.ticks = ticks;
  }
  // Server times carry microseconds; keep milliseconds so every browser parses them.
  const ms = (iso) => Date.parse(iso.replace(/(\.\d{3})\d+/, "$1"));

  const boot = JSON.parse($("dashboard-state").textContent);
  let parties = boot.parties; // every Party in force: only the page and watch_session carry them
  let partiesKey = JSON.stringify(parties);
  let timeline = fromServer(boot.timeline);
  let latest = boot; // the newest state received
  let shown = boot; // the state on screen, to tell when a threshold is reached or lost
  let scheduled = false;
  let chart = null;
  let rows = indexRows();

  const socket = live.connect();

  function setLive(ok, message) {
    $("live").classList.toggle("offline", !ok);
    $("live-text").textContent = message;
  }

  // Timeline --------------------------------------------------------------------------------

  // The timeline as the points where the count changed, and the time it is drawn up to.
  function fromServer(points) {
    const changes = [];
    for (const [at, count] of points) {
      if (!changes.length || changes[changes.length - 1].y !== count) changes.push({ x: ms(at), y: count });
    }
    return { changes, end: points.length ? ms(points[points.length - 1][0]) : null };
  }

  function extendTimeline(state) {
    const at = ms(state.as_of);
    if (!timeline.changes.length) {
      if (state.state === "scheduled") return; // nothing to draw before the opening
      timeline = { changes: [{ x: at, y: state.parties_present }], end: at };
      return;
    }
    if (at < timeline.end) return; // older than what is drawn: the next resync has it
    timeline.end = at;
    if (timeline.changes[timeline.changes.length - 1].y !== state.parties_present) {
      timeline.changes.push({ x: at, y: state.parties_present });
    }
  }

  function points() {
    const { changes, end } = timeline;
    return [...changes, { x: end, y: changes[changes.length - 1].y }];
  }

  function thresholdLine(label, value, colour, data) {
    const first = data[0].x;
    const last = data[data.length - 1].x;
    return {
      label: `${label} (${value})`,
      data: [
        { x: first, y: value },
        { x: last, y: value },
      ],
      borderColor: colour,
      borderWidth: 1.5,
      borderDash: [6, 4],
      pointRadius: 0,
      fill: false,
    };
  }

  function drawChart(state) {
    const hasTimeline = timeline.changes.length > 0;
    $("chart-box").hidden = !hasTimeline;
    $("chart-empty").hidden = hasTimeline;
    if (!hasTimeline || typeof Chart === "undefined") return;
    const data = points();
    const datasets = [
      {
        label: "Parties present",
        data,
        stepped: true,
        borderColor: "#0b5fa5",
        backgroundColor: "rgba(11, 95, 165, 0.12)",
        borderWidth: 2,
        pointRadius: 0,
        fill: "origin",
      },
      thresholdLine("To open", state.needed_to_open, "#9a6400", data),
      thresholdLine("To decide", state.needed_to_decide, "#1d7a46", data),
    ];
    // At least a minute wide, so that a session just opened does not draw a single vertical line.
    const x = { min: data[0].x, max: Math.max(data[data.length - 1].x, data[0].x + 60000) };
    $("timeline-chart").setAttribute(
      "aria-label",
      `Chart of the number of Parties present over the session: ${state.parties_present} now, ` +
        `with lines at ${state.needed_to_open} Parties to open and ${state.needed_to_decide} to decide.`,
    );
    if (chart) {
      chart.data.datasets = datasets;
      Object.assign(chart.options.scales.x, x);
      chart.options.scales.y.suggestedMax = state.parties_in_force;
      chart.update("none");
      return;
    }
    chart = new Chart($("timeline-chart"), {
      type: "line",
      data: { datasets },
      options: {
        animation: false,
        parsing: false,
        normalized: true,
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: {
            type: "linear",
            ...x,
            afterBuildTicks: roundTicks,
            ticks: { callback: (value) => timeFormat.format(value), maxRotation: 0 },
          },
          y: {
            beginAtZero: true,
            suggestedMax: state.parties_in_force,
            ticks: { precision: 0 },
            title: { display: true, text: "Parties" },
          },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxHeight: 2 } },
          tooltip: {
            callbacks: { title: (items) => (items.length ? secondsFormat.format(items[0].parsed.x) : "") },
          },
        },
      },
    });
  }

  // Parties by regional group -----------------------------------------------------------------

  function indexRows() {
    const map = new Map();
    for (const li of $("groups").querySelectorAll("li[data-code]")) map.set(li.dataset.code, li);
    return map;
  }

  function icon(status) {
    const span = el("span", `status-icon st-${status}`);
    span.setAttribute("aria-hidden", "true");
    return span;
  }

  function partyRow(party) {
    const li = el("li");
    li.dataset.code = party.code;
    li.append(icon("absent"), " ", el("span", "party-name", party.name), " ", el("span", "party-state"));
    if (CREDENTIALS_LABELS[party.credentials]) {
      li.append(" ", el("span", "party-cred", CREDENTIALS_LABELS[party.credentials]));
    }
    return li;
  }

  function buildGroups() {
    const sections = [];
    for (const [group, label] of GROUPS) {
      const members = parties.filter((p) => (p.regional_group ?? null) === group);
      if (!members.length) continue;
      const section = el("section", "group");
      section.dataset.group = group || "";
      section.setAttribute("aria-label", label);
      const count = el("span", "group-count");
      count.append(el("strong", "", "0"), ` / ${members.length}`);
      const heading = el("h3", "", `${label} `);
      heading.append(count);
      const list = el("ul", "party-status");
      list.append(...members.map(partyRow));
      section.append(heading, list);
      sections.push(section);
    }
    $("groups").replaceChildren(...sections);
    rows = indexRows();
  }

  // A Party counted present only through pages gone quiet shows "(reconnecting)": it stays counted
  // for the grace period, then leaves at its last contact unless a page comes back.
  function showStatuses(present, inGrace) {
    const reconnecting = new Set(inGrace || []);
    for (const [code, li] of rows) {
      const status = present[code] || "absent";
      const shownAs = reconnecting.has(code) ? `${status} grace` : status;
      if (li.dataset.status === shownAs) continue;
      li.dataset.status = shownAs;
      li.className = reconnecting.has(code) ? `st-${status} grace` : `st-${status}`;
      li.querySelector(".status-icon").className = `status-icon st-${status}`;
      li.querySelector(".party-state").textContent =
        STATUS_LABELS[status] + (reconnecting.has(code) ? " (reconnecting)" : "");
    }
    for (const section of $("groups").querySelectorAll(".group")) {
      const here = [...section.querySelectorAll("li[data-code]")].filter((li) => present[li.dataset.code]).length;
      section.querySelector(".group-count strong").textContent = here;
    }
  }

  // Quorum, bars and the signal ---------------------------------------------------------------

  function showBar(key, reached, needed, present) {
    const bar = $(`${key}-bar`);
    bar.classList.toggle("met", reached);
    bar.classList.toggle("unmet", !reached);
    const progress = $(`${key}-progress`);
    progress.max = Math.max(needed, 1);
    progress.value = Math.min(present, needed);
    progress.setAttribute("aria-valuetext", `${present} of ${needed} Parties needed`);
    progress.textContent = `${present} / ${needed}`;
    $(`${key}-present`).textContent = present;
    $(`${key}-needed`).textContent = needed;
    const status = $(`${key}-status`);
    const mark = el("span", "", reached ? "✓" : "✗");
    mark.setAttribute("aria-hidden", "true");
    status.replaceChildren(mark, reached ? " Reached" : ` Not reached: ${needed - present} more needed`);
  }

  function signal(before, now) {
    const messages = [];
    for (const [, flag, needed, what] of THRESHOLDS) {
      if (before[flag] === now[flag]) continue;
      messages.push({
        reached: now[flag],
        text: now[flag]
          ? `Quorum ${what} reached: ${now.parties_present} Parties present, ${now[needed]} needed.`
          : `Quorum ${what} lost: ${now.parties_present} Parties present, ${now[needed]} needed.`,
      });
    }
    if (!messages.length) return;
    const time = secondsFormat.format(ms(now.as_of));
    const list = $("signal-list");
    list.replaceChildren(
      ...messages.map(({ reached, text }) => {
        const li = el("li", reached ? "reached" : "lost");
        const mark = el("span", "signal-mark", reached ? "✓" : "!");
        mark.setAttribute("aria-hidden", "true");
        li.append(mark, " ", el("time", "", time), " ", text);
        return li;
      }),
    );
    $("signal").className = `signal ${messages.every((m) => m.reached) ? "reached" : "lost"}`;
    $("signal").hidden = false;
    $("announcer").textContent = `${time}: ${messages.map((m) => m.text).join(" ")}`;
  }

  function render() {
    scheduled = false;
    const s = latest;
    $("present").textContent = s.parties_present;
    $("in-force").textContent = s.parties_in_force;
    $("participants").textContent = s.participants_present;
    for (const channel of ["online", "in_person", "both"]) {
      $(`channel-${channel}`).textContent = s.participants_by_channel[channel];
    }
    $("credentials").textContent = s.credentials_accepted;
    $("in-grace").textContent = (s.in_grace || []).length;
    for (const [key, flag, needed] of THRESHOLDS) showBar(key, s[flag], s[needed], s.parties_present);
    $("as-of").textContent = ` · as of ${secondsFormat.format(ms(s.as_of))}`;

    for (const form of document.querySelectorAll("form[data-allowed-from]")) {
      form.hidden = !form.dataset.allowedFrom.split(" ").includes(s.state);
    }
    const badge = $("session-state").querySelector(".badge");
    badge.className = `badge state-${s.state}`;
    badge.textContent = s.state;

    const key = JSON.stringify(parties);
    if (key !== partiesKey) {
      partiesKey = key;
      buildGroups();
    }
    showStatuses(s.present, s.in_grace);
    drawChart(s);
    signal(shown, s);
    shown = s;
  }

  function schedule() {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(render);
    }
  }

  // A live update: state only. Bursts are drawn once per frame, with the latest state.
  function update(state) {
    if (state.session_id !== sessionId || ms(state.as_of) < ms(latest.as_of)) return;
    latest = state;
    extendTimeline(state);
    schedule();
  }

  // The full state from watch_session replaces everything, timeline included.
  function resync(full) {
    const newer = ms(latest.as_of) > ms(full.as_of) ? latest : null; // an update overtook the acknowledgement
    parties = full.parties;
    timeline = fromServer(full.timeline);
    latest = full;
    if (newer) {
      latest = newer;
      extendTimeline(newer);
    }
    schedule();
  }

  // The next resync, spread a little so that dashboards that connected together do not ask together.
  let resyncTimer = null;
  function resyncIn(ms) {
    clearTimeout(resyncTimer);
    resyncTimer = setTimeout(watch, ms * (0.75 + Math.random() / 2));
  }

  function watch() {
    resyncIn(RESYNC_MS); // again later whatever happens to this one
    if (!socket.connected) return;
    socket.emit("watch_session", { session_id: sessionId }, (ack) => {
      if (ack.ok) {
        setLive(true, "live");
        resync(ack.state);
        if (ack.resync_seconds > 0) resyncIn(ack.resync_seconds * 1000);
      } else {
        setLive(false, ack.error.message);
      }
    });
  }

  $("signal-dismiss").addEventListener("click", () => {
    $("signal").hidden = true;
  });
  $("party-filter").addEventListener("change", (event) => {
    $("groups").dataset.filter = event.target.value;
  });

  socket.on("connect", watch);
  socket.on("disconnect", () => setLive(false, "reconnecting…"));
  socket.on("connect_error", () => setLive(false, "offline, retrying…"));
  socket.on("quorum_updated", update);
  socket.on("session_ended", () => {
    socket.disconnect();
    setLive(false, "logged out: reload the page to log in again");
  });
  resyncIn(RESYNC_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") watch();
  });

  drawChart(boot);
})();
