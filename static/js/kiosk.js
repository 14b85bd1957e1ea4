// A gate kiosk: reads badges (camera or USB scanner), asks entrants for their code, records each scan over
// Socket.IO, and keeps scans in a queue on the device while the connection is down.
(() => {
  "use strict";
  const root = document.getElementById("kiosk");
  if (!root) return;

  const $ = (id) => document.getElementById(id);
  const sessionId = Number(root.dataset.sessionId);
  const gate = root.dataset.gate;
  const isEntry = gate === "entry";
  const categories = JSON.parse(root.dataset.categories);
  const maxAgeMinutes = Number(root.dataset.maxAgeMinutes);
  // Scans carry the server's time, not the tablet's: codes are checked at the time of the scan, and a
  // tablet's clock may be minutes off.
  const clockOffset = Date.parse(root.dataset.serverTime) - Date.now();
  const QUEUE_KEY = `kiosk-queue:${sessionId}:${gate}`;
  const SHOW_OK_MS = 4000;
  const SHOW_REFUSED_MS = 7000;
  const SHOW_SAVED_MS = 4000;
  const CODE_IDLE_MS = 60000;
  const ACK_TIMEOUT_MS = 10000;
  const RETRY_MS = 5000;
  const SAME_BADGE_MS = 2500;
  const KEPT_OUTCOMES = 12;

  // Codes that say "try again later" rather than answer the scan: the scan stays queued.
  const RETRY_CODES = new Set(["unavailable"]);
  const HALT_CODES = new Set(["login_required", "forbidden"]);
  const TITLES = {
    bad_code: "Wrong code",
    replayed_code: "Code already used",
    malformed_code: "Type the 6 digits",
    not_enrolled: "No authenticator app",
    throttled: "Too many wrong codes",
    locked: "Too many wrong codes",
    forged_badge: "Not a valid badge",
    revoked_badge: "Badge revoked",
    not_approved: "Registration not approved",
    not_registered: "Not registered",
    not_registered_for_segment: "Not registered for this part",
    wrong_meeting: "Badge of another meeting",
    session_closed: "Session not open",
    wrong_channel: "Not an in-person session",
    stale_scan: "Scan too old",
    future_scan: "Kiosk clock is wrong",
    not_found: "No such session",
  };

  const socket = live.connect();
  let mode = "scan";
  let pendingToken = null;
  let awaiting = null; // the nonce whose answer the person at the gate is waiting for
  let screenTimer = null;
  let codeTimer = null;
  let sending = false;
  let halted = false;
  let storageBroken = false;
  let outcomes = [];

  // Queue ------------------------------------------------------------------------------------

  function loadQueue() {
    try {
      const stored = JSON.parse(localStorage.getItem(QUEUE_KEY) || "[]");
      // Whatever was waiting before a reload is answered in the list, not on the big screen.
      return Array.isArray(stored) ? stored.map((item) => ({ scan: item.scan, live: false })) : [];
    } catch {
      storageBroken = true;
      return [];
    }
  }

  let queue = loadQueue();

  function saveQueue() {
    try {
      localStorage.setItem(QUEUE_KEY, JSON.stringify(queue));
      storageBroken = false;
    } catch {
      storageBroken = true;
    }
    renderQueue();
  }

  function renderQueue() {
    const waiting = queue.length;
    const words = `${waiting} scan${waiting === 1 ? "" : "s"} waiting`;
    $("queue-count").textContent = words;
    $("queue-count").hidden = waiting === 0;
    const sendingNote = $("sending");
    if (socket.connected && waiting > 0 && !halted) {
      sendingNote.textContent = `Sending ${words.replace(" waiting", "")} made while offline…`;
      sendingNote.hidden = false;
    } else {
      sendingNote.hidden = true;
    }
    if (storageBroken) {
      $("offline-text").textContent =
        "This browser cannot store scans: keep this page open, or they are lost on a reload.";
    }
  }

  function remove(nonce) {
    queue = queue.filter((item) => item.scan.nonce !== nonce);
    saveQueue();
  }

  // Screens ----------------------------------------------------------------------------------

  function show(next) {
    mode = next;
    clearTimeout(screenTimer);
    clearTimeout(codeTimer);
    $("panel-scan").hidden = next !== "scan";
    if ($("panel-code")) $("panel-code").hidden = next !== "code";
    $("panel-result").hidden = next !== "result";
    if (next === "scan") focusScanner();
  }

  function backToScanning() {
    awaiting = null;
    show("scan");
  }

  function showResult(kind, title, name, detail, note, ms) {
    show("result");
    const panel = $("panel-result");
    panel.className = `kiosk-panel kiosk-result ${kind}`;
    $("result-title").textContent = title;
    $("result-name").textContent = name || "";
    $("result-detail").textContent = detail || "";
    $("result-note").textContent = note || "";
    $("result-next").hidden = kind === "waiting";
    if (ms) screenTimer = setTimeout(backToScanning, ms);
  }

  function describe(ack) {
    if (ack.ok) {
      const arriving = ack.kind === "entry";
      let note = "";
      if (!ack.recorded) note = arriving ? "Already checked in." : "No entry was on record: nothing to change.";
      return {
        kind: "ok",
        title: arriving ? "Welcome" : "Goodbye",
        name: ack.name,
        detail: [ack.delegation, categories[ack.category] || ""].filter(Boolean).join(" · "),
        note,
        outcome: arriving ? "Welcome" : "Goodbye",
      };
    }
    const code = ack.error.code;
    return {
      kind: "refused",
      title: TITLES[code] || "Not recorded",
      name: "",
      detail: ack.error.message,
      note: code === "bad_code" || code === "replayed_code" ? "Scan the badge again and type the current code." : "",
      outcome: TITLES[code] || "Not recorded",
    };
  }

  function showAnswer(ack) {
    const d = describe(ack);
    showResult(d.kind, d.title, d.name, d.detail, d.note, d.kind === "ok" ? SHOW_OK_MS : SHOW_REFUSED_MS);
  }

  function showSaved() {
    awaiting = null;
    showResult(
      "saved",
      "Saved on this kiosk",
      "",
      halted
        ? "This scan is kept on the kiosk until an officer logs in here again."
        : "The connection is down. This scan will be checked and sent when it returns.",
      `Scans older than ${maxAgeMinutes} minutes when the connection returns are refused.`,
      SHOW_SAVED_MS,
    );
  }

  function localTime(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function addOutcome(item, ack) {
    const d = describe(ack);
    const who = ack.ok ? [d.name, d.detail, d.note].filter(Boolean).join(" · ") : d.detail;
    outcomes = [{ at: item.scan.scanned_at, kind: d.kind, outcome: d.outcome, who }]
      .concat(outcomes)
      .slice(0, KEPT_OUTCOMES);
    $("offline-list").replaceChildren(
      ...outcomes.map((o) => {
        const li = document.createElement("li");
        li.className = o.kind;
        const time = document.createElement("time");
        time.dateTime = o.at;
        time.textContent = localTime(o.at);
        const outcome = Object.assign(document.createElement("span"), { className: "outcome", textContent: o.outcome });
        const who = Object.assign(document.createElement("span"), { textContent: o.who });
        li.append(time, outcome, who);
        return li;
      }),
    );
    $("offline-results").hidden = false;
  }

  // Sending ----------------------------------------------------------------------------------

  function record(token, code) {
    const scan = {
      session_id: sessionId,
      gate,
      token,
      nonce: live.nonce(),
      scanned_at: new Date(Date.now() + clockOffset).toISOString(),
    };
    if (isEntry) scan.code = code;
    // Stored before it is sent: a reload or a lost connection does not lose it.
    const item = { scan, live: socket.connected && !halted };
    queue.push(item);
    saveQueue();
    if (item.live) {
      awaiting = scan.nonce;
      showResult("waiting", "Checking…", "", "", "", 0);
    } else {
      showSaved();
    }
    pump();
  }

  function fellBack(item) {
    // The answer did not come in time: the scan waits in the queue like any offline scan.
    if (!item.live) return;
    item.live = false;
    saveQueue();
    if (awaiting === item.scan.nonce) showSaved();
  }

  function pump() {
    if (sending || halted || !socket.connected || queue.length === 0) return;
    sending = true;
    const item = queue[0];
    socket.timeout(ACK_TIMEOUT_MS).emit("kiosk_scan", item.scan, (err, ack) => {
      sending = false;
      if (err || !ack || (!ack.ok && RETRY_CODES.has(ack.error.code))) {
        fellBack(item);
        setTimeout(pump, RETRY_MS);
        return;
      }
      if (!ack.ok && HALT_CODES.has(ack.error.code)) {
        halt(ack.error.message);
        fellBack(item);
        return;
      }
      // Answered (recorded, already recorded, or refused for a reason a retry would not change).
      remove(item.scan.nonce);
      if (item.live && awaiting === item.scan.nonce) {
        awaiting = null;
        showAnswer(ack);
      } else {
        addOutcome(item, ack);
      }
      pump();
    });
  }

  function halt(message) {
    halted = true;
    setLive(false, "Stopped");
    $("offline").hidden = false;
    $("offline-text").textContent = `${message} Scans are kept on this kiosk; they are sent once an officer logs in again here.`;
    renderQueue();
  }

  // Connection -------------------------------------------------------------------------------

  function setLive(ok, text) {
    $("live").classList.toggle("offline", !ok);
    $("live-text").textContent = text;
  }

  function applyState(state) {
    if (state.session_id !== sessionId) return;
    $("session-line").textContent = `Session ${state.state} · ${state.participants_present} present`;
    const warning = $("session-warning");
    warning.hidden = !isEntry || state.state === "open";
    warning.textContent = `The session is ${state.state}: entries are refused until an officer opens it.`;
  }

  socket.on("connect", () => {
    if (halted) return;
    setLive(true, "Online");
    $("offline").hidden = true;
    socket.emit("watch_session", { session_id: sessionId }, (ack) => {
      if (ack && ack.ok) applyState(ack.state);
    });
    renderQueue();
    pump();
  });
  socket.on("disconnect", () => {
    if (halted) return;
    setLive(false, "Offline");
    $("offline").hidden = false;
    renderQueue();
  });
  socket.on("connect_error", (err) => {
    if (err && err.message === "login_required") {
      halt("The kiosk's login has ended: reload the page and log in as an officer.");
      return;
    }
    setLive(false, "Offline");
    $("offline").hidden = false;
    renderQueue();
  });
  socket.on("quorum_updated", applyState);
  socket.on("session_ended", () => {
    socket.disconnect();
    halt("The kiosk's login has ended (logged out elsewhere): reload the page and log in as an officer.");
  });

  // Badge reading ----------------------------------------------------------------------------

  function badgeRead(token) {
    token = token.trim();
    if (!token || mode !== "scan") return;
    if (isEntry) {
      pendingToken = token;
      askCode();
    } else {
      record(token, null);
    }
  }

  const scanner = $("scanner");

  function focusScanner() {
    if (mode === "scan" && document.activeElement !== scanner) scanner.focus({ preventScroll: true });
  }

  scanner.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const token = scanner.value;
    scanner.value = "";
    badgeRead(token);
  });
  // A USB scanner types into whatever has the focus: keep it on the scanner field while scanning.
  scanner.addEventListener("blur", () => {
    setTimeout(() => {
      const active = document.activeElement;
      if (!active || active === document.body) focusScanner();
    }, 300);
  });
  $("panel-scan").addEventListener("click", focusScanner);

  // The camera sees a badge many times a second: it is read again only after leaving the view.
  let lastSeen = { token: null, at: 0 };

  function cameraRead(text) {
    const now = Date.now();
    const repeated = text === lastSeen.token && now - lastSeen.at < SAME_BADGE_MS;
    lastSeen = { token: text, at: now };
    if (!repeated) badgeRead(text);
  }

  async function nativeDetector() {
    if (!("BarcodeDetector" in window)) return null;
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      return formats.includes("qr_code") ? new window.BarcodeDetector({ formats: ["qr_code"] }) : null;
    } catch {
      return null;
    }
  }

  function cameraUnavailable(reason) {
    $("camera").classList.add("off");
    $("camera-message").textContent = `${reason} Scan badges with the badge scanner.`;
    focusScanner();
  }

  async function startCamera() {
    const video = $("video");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      cameraUnavailable("No camera access on this page (it needs HTTPS and a camera).");
      return;
    }
    try {
      // The tablet faces the people at the door: its front camera sees the badges.
      const stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: { ideal: "user" }, width: { ideal: 1280 }, height: { ideal: 720 } },
        audio: false,
      });
      video.srcObject = stream;
      const settings = stream.getVideoTracks()[0].getSettings();
      // A front camera is shown as a mirror, which is how people expect to see themselves.
      video.classList.toggle("mirrored", settings.facingMode !== "environment");
      await video.play();
    } catch (err) {
      cameraUnavailable(err && err.name === "NotAllowedError" ? "The camera may not be used here." : "No camera was found.");
      return;
    }
    let detector = await nativeDetector();
    if (!detector && typeof window.jsQR !== "function") {
      cameraUnavailable("This browser cannot read QR codes from the camera.");
      return;
    }
    $("camera-message").textContent = "Hold the badge's QR code in the frame.";
    const canvas = document.createElement("canvas");
    const context = canvas.getContext("2d", { willReadFrequently: true });

    async function readFrame() {
      try {
        if (video.readyState >= 2 && !document.hidden) {
          let text = null;
          if (detector) {
            const found = await detector.detect(video);
            text = found.length ? found[0].rawValue : null;
          } else {
            // Scaled down: jsQR's time grows with the pixels, and a badge held up close is large.
            const scale = Math.min(1, 640 / video.videoWidth);
            canvas.width = Math.round(video.videoWidth * scale);
            canvas.height = Math.round(video.videoHeight * scale);
            context.drawImage(video, 0, 0, canvas.width, canvas.height);
            const image = context.getImageData(0, 0, canvas.width, canvas.height);
            const found = window.jsQR(image.data, image.width, image.height, { inversionAttempts: "dontInvert" });
            text = found ? found.data : null;
          }
          if (text) cameraRead(text);
        }
      } catch {
        // A native detector that fails once is replaced by the library for good.
        detector = null;
      }
      setTimeout(readFrame, 200);
    }
    readFrame();
  }

  // Code entry -------------------------------------------------------------------------------

  const codeInput = $("code");

  function codeHelp(text, isError) {
    const help = $("code-help");
    help.textContent = text;
    help.classList.toggle("error", Boolean(isError));
  }

  function armCodeTimer() {
    clearTimeout(codeTimer);
    // Someone who walks away does not leave their scanned badge waiting for the next person's code.
    codeTimer = setTimeout(() => {
      pendingToken = null;
      backToScanning();
    }, CODE_IDLE_MS);
  }

  function typed() {
    const missing = 6 - codeInput.value.length;
    codeHelp(missing > 0 ? `${missing} more digit${missing === 1 ? "" : "s"}.` : "Press Check in.", false);
    armCodeTimer();
  }

  function askCode() {
    show("code");
    codeInput.value = "";
    codeHelp("Six digits.", false);
    codeInput.focus({ preventScroll: true });
    armCodeTimer();
  }

  if (isEntry) {
    $("keypad").addEventListener("click", (event) => {
      const key = event.target.closest("button[data-key]");
      if (!key) return;
      const value = codeInput.value;
      if (key.dataset.key === "back") codeInput.value = value.slice(0, -1);
      else if (key.dataset.key === "clear") codeInput.value = "";
      else if (value.length < 6) codeInput.value = value + key.dataset.key;
      codeInput.focus({ preventScroll: true });
      typed();
    });
    // A USB scanner used while a code is being typed would type a badge's token here, then Enter: its
    // characters are kept out, and its Enter does not send the code. Scanners type a token in a burst
    // that starts with a letter; the burst ends when the keys stop for a moment.
    let scannerUntil = 0;
    codeInput.addEventListener("keydown", (event) => {
      const inBurst = Date.now() < scannerUntil;
      if (event.key === "Enter" && inBurst) {
        event.preventDefault();
        scannerUntil = 0;
        codeHelp("A badge was scanned: finish typing this code, or press Cancel first.", true);
      } else if (event.key.length === 1 && (inBurst || !/[0-9]/.test(event.key))) {
        event.preventDefault();
        scannerUntil = Date.now() + 300;
      }
    });
    codeInput.addEventListener("input", () => {
      codeInput.value = codeInput.value.replace(/\D/g, "").slice(0, 6);
      typed();
    });
    $("panel-code").addEventListener("submit", (event) => {
      event.preventDefault();
      const code = codeInput.value.replace(/\D/g, "");
      if (code.length !== 6) {
        codeHelp("Type all 6 digits of the code.", true);
        return;
      }
      const token = pendingToken;
      pendingToken = null;
      codeInput.value = "";
      if (token) record(token, code);
      else backToScanning();
    });
    $("cancel-code").addEventListener("click", () => {
      pendingToken = null;
      backToScanning();
    });
  }

  $("result-next").addEventListener("click", backToScanning);

  // Tablet comforts --------------------------------------------------------------------------

  const fullscreen = $("fullscreen");
  if (document.documentElement.requestFullscreen) {
    fullscreen.hidden = false;
    fullscreen.addEventListener("click", () => {
      if (document.fullscreenElement) document.exitFullscreen();
      else document.documentElement.requestFullscreen().catch(() => {});
    });
  }

  // Keep the screen on at the door; the browser drops the lock when the page is hidden.
  async function keepAwake() {
    try {
      if (navigator.wakeLock && !document.hidden) await navigator.wakeLock.request("screen");
    } catch {
      // Not allowed here (no HTTPS, battery saver): the screen may dim.
    }
  }
  document.addEventListener("visibilitychange", keepAwake);

  renderQueue();
  show("scan");
  keepAwake();
  startCamera();
})();
