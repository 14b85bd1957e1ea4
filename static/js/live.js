// Shared helpers of the live pages: the /live socket, a nonce per check-in, and a short local time.
window.live = (() => {
  "use strict";

  function nonce() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function time(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // The /live socket. A server process at its connection limit refuses with "server_busy"; Socket.IO
  // does not retry a refusal by itself, so the page tries again a few seconds later, at a random
  // moment, so that a crowd refused together does not come back together.
  function connect() {
    const socket = io("/live");
    socket.on("connect_error", (err) => {
      if (err && err.message === "server_busy") {
        setTimeout(() => socket.connect(), 2000 + Math.random() * 8000);
      }
    });
    return socket;
  }

  return { connect, nonce, time };
})();
