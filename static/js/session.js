// A delegate's session page: while it is open, the delegate is present online.
// Heartbeats tell the server the page is still open; a dropped connection keeps the presence
// for the grace period, and the page checks in again by itself when it comes back.
(() => {
  "use strict";
  const page = document.querySelector(".session-page");
  if (!page || page.dataset.canCheckIn !== "yes") return;

  const sessionId = Number(page.dataset.sessionId);
  const heartbeatMs = Math.max(5, Number(page.dataset.heartbeatSeconds) || 20) * 1000;
  const box = document.getElementById("presence");
  const text = document.getElementById("presence-text");
  const leaveButton = document.getElementById("leave");
  const rejoinButton = document.getElementById("rejoin");
  const socket = live.connect();
  let pendingNonce = null;
  let present = false;
  let presentSince = 0; // when this page's presence began (ms), as the server said
  let left = false;
  let lastBeat = 0;

  function show(kind, message) {
    box.className = `presence presence-${kind}`;
    text.textContent = message;
    leaveButton.hidden = kind !== "present";
    rejoinButton.hidden = !(left && kind === "absent");
  }

  function checkIn() {
    if (left) return;
    // One nonce per attempt: a retry after a lost acknowledgement is not a second arrival.
    pendingNonce = pendingNonce || live.nonce();
    socket.timeout(10000).emit("check_in", { session_id: sessionId, nonce: pendingNonce }, (err, ack) => {
      if (err) {
        show("pending", "No answer from the server yet; trying again…");
        setTimeout(checkIn, 2000);
        return;
      }
      pendingNonce = null;
      if (ack.ok) {
        present = true;
        presentSince = Date.parse(ack.since || ack.at);
        lastBeat = Date.now();
        show("present", `You are checked in: present since ${live.time(ack.since || ack.at)}.`);
      } else {
        present = false;
        show("refused", ack.error.message);
      }
    });
  }

  function heartbeat() {
    if (!present || left || !socket.connected) return;
    lastBeat = Date.now();
    socket.timeout(10000).emit("heartbeat", { session_id: sessionId }, (err, ack) => {
      if (err || !ack.ok || ack.present || left) return;
      // The presence lapsed (the connection was gone too long) or was ended: start a new one.
      present = false;
      show("pending", "You were away for too long and were checked out; checking you in again…");
      checkIn();
    });
  }

  // A timer, and the server's own keep-alive pings: background tabs slow timers down, not pings.
  setInterval(heartbeat, heartbeatMs);
  socket.io.on("ping", () => {
    if (Date.now() - lastBeat >= heartbeatMs / 2) heartbeat();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") heartbeat();
  });

  socket.on("connect", () => checkIn());
  socket.on("disconnect", () => {
    if (!left) show("pending", "Connection lost; reconnecting… You stay checked in if it comes back shortly.");
  });
  socket.on("connect_error", (err) => {
    if (err.message === "login_required") show("refused", "Your login has ended. Reload the page to log in again.");
    else if (err.message === "server_busy" && !left) show("pending", "The server is busy; trying again in a few seconds…");
    else if (!left) show("pending", "Cannot reach the server; retrying… You stay checked in if it comes back shortly.");
  });
  socket.on("session_ended", () => {
    left = true;
    present = false;
    socket.disconnect();
    show("refused", "Your login has ended (you logged out elsewhere, or the secretariat changed your account). Reload the page to log in again.");
  });
  socket.on("session_updated", (data) => {
    if (data.session_id !== sessionId || left) return;
    if (data.state === "open") checkIn();
    else if (data.state === "closed") {
      present = false;
      show("refused", "The session is closed. Thank you for attending.");
    } else if (data.state === "suspended") show("pending", "The session is suspended. Keep this page open; it will resume here.");
  });
  socket.on("checked_out", (data) => {
    // With several server processes the news comes a moment late: a departure from before this
    // page's own check-in, or while it is not checked in, is not this page's.
    if (data.session_id !== sessionId || !present || Date.parse(data.at) < presentSince) return;
    left = true;
    present = false;
    show("absent", `You left the session from another window or device at ${live.time(data.at)}.`);
  });

  leaveButton.addEventListener("click", () => {
    socket.timeout(10000).emit("check_out", { session_id: sessionId, nonce: live.nonce() }, (err, ack) => {
      if (err || !ack.ok) {
        show("refused", err ? "No answer from the server; try again." : ack.error.message);
        return;
      }
      left = true;
      present = false;
      show("absent", `You left the session at ${live.time(ack.at)}.`);
    });
  });
  rejoinButton.addEventListener("click", () => {
    left = false;
    show("pending", "Checking you in…");
    checkIn();
  });
})();
