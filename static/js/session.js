// A delegate's session page: the open Socket.IO connection is their online presence.
(() => {
  "use strict";
  const page = document.querySelector(".session-page");
  if (!page || page.dataset.canCheckIn !== "yes") return;

  const sessionId = Number(page.dataset.sessionId);
  const box = document.getElementById("presence");
  const text = document.getElementById("presence-text");
  const leaveButton = document.getElementById("leave");
  const socket = io("/live");
  let pendingNonce = null;
  let left = false;

  function show(kind, message) {
    box.className = `presence presence-${kind}`;
    text.textContent = message;
    leaveButton.hidden = kind !== "present";
  }

  function checkIn() {
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
        show("present", `You are checked in: present since ${live.time(ack.at)}.`);
      } else {
        show("refused", ack.error.message);
      }
    });
  }

  socket.on("connect", () => {
    if (!left) checkIn();
  });
  socket.on("disconnect", () => {
    if (!left) show("pending", "Connection lost; reconnecting… You stay checked in if it comes back.");
  });
  socket.on("connect_error", (err) => {
    show(
      "refused",
      err.message === "login_required"
        ? "Your login has ended. Reload the page to log in again."
        : "Cannot reach the server; retrying…",
    );
  });
  socket.on("session_ended", () => {
    left = true;
    socket.disconnect();
    show("refused", "Your login has ended (you logged out elsewhere, or the secretariat changed your account). Reload the page to log in again.");
  });
  socket.on("session_updated", (data) => {
    if (data.session_id !== sessionId) return;
    if (data.state === "open") checkIn();
    else if (data.state === "closed") show("refused", "The session is closed. Thank you for attending.");
    else if (data.state === "suspended") show("pending", "The session is suspended. Keep this page open; it will resume here.");
  });

  leaveButton.addEventListener("click", () => {
    socket.emit("check_out", { session_id: sessionId, nonce: live.nonce() }, () => {
      left = true;
      socket.disconnect();
      show("absent", "You left the session. Reload the page to check in again.");
    });
  });
})();
