// The sana-stream browser client: one WebSocket for signaling and control, one WebRTC video track.
//
// Latency is measured where the picture is shown. The server stamps frame n of its track with the RTP time
// n · 90000 / fps and answers each edit with the slot n of the first frame showing it ("applied");
// requestVideoFrameCallback reports the RTP timestamp of each frame as it is presented, so the first
// presented frame at or after slot n ends the measurement. (Slots are counted from the first frame shown.)
"use strict";

const $ = (id) => document.getElementById(id);
const video = $("video");
const MAX_IMAGE_BYTES = 4 * 1024 * 1024; // the server's cap; checked here to fail fast
const OPPOSITE = { w: "s", s: "w", a: "d", d: "a", i: "k", k: "i", j: "l", l: "j" }; // the world's keys

// Read by the browser test, and handy in the console.
window.sanaStats = { framesShown: 0, firstFrameMs: null, editMs: [], actionMs: [], lastSlot: null, errors: [],
                     server: {} };

let ws = null;
let pc = null;
let fps = 16;
let startedAt = 0;
let rtpOrigin = null;
let nextId = 1;
const pendingEdits = new Map(); // request id -> {sent: performance.now(), kind}
const appliedAt = [];           // [{slot, sent, kind}] waiting for their frame to be shown
const heldKeys = new Set();
let paused = false;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
  if (isError) window.sanaStats.errors.push(text);
}

function send(message) {
  if (!ws || ws.readyState !== WebSocket.OPEN) return null;
  const id = nextId++;
  ws.send(JSON.stringify({ ...message, id }));
  return id;
}

function setControls(live) {
  for (const id of ["send-prompt", "image", "pause", "reset", "stop"]) $(id).disabled = !live;
  $("start").disabled = live;
  $("mode").disabled = live;
}

// ----- starting and stopping --------------------------------------------------------------------------------

async function start(event) {
  event.preventDefault();
  setControls(true);
  setStatus("connecting…");
  window.sanaStats.framesShown = 0;
  window.sanaStats.firstFrameMs = null;
  rtpOrigin = null;
  startedAt = performance.now();

  const token = new URLSearchParams(location.search).get("token");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/ws${token ? "?token=" + encodeURIComponent(token) : ""}`);
  ws.onmessage = (e) => onMessage(JSON.parse(e.data));
  ws.onclose = (e) => {
    if (e.code !== 1000 || e.reason) setStatus(`disconnected${e.reason ? ": " + e.reason : ""}`, e.code !== 1000);
    stop();
  };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("cannot reach the server")); })
    .catch((err) => { setStatus(err.message, true); stop(); });
  if (!ws || ws.readyState !== WebSocket.OPEN) return;

  pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (e) => { video.srcObject = e.streams[0] || new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => {
    if (pc && pc.connectionState === "failed") setStatus("the video connection failed", true);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc); // the server does not take trickled candidates
  const offer = { type: "offer", sdp: pc.localDescription.sdp, prompt: $("prompt").value, mode: $("mode").value };
  const seed = $("seed").value.trim();
  if (seed !== "") offer.seed = Number(seed);
  send(offer);
  $("keys-help").hidden = $("mode").value !== "world";
}

function gatheringComplete(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (peer.iceGatheringState === "complete") resolve(); };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // some networks never finish: go with what was gathered
  });
}

function stop() {
  if (pc) { pc.close(); pc = null; }
  if (ws) { const socket = ws; ws = null; socket.onclose = null; socket.close(); }
  video.srcObject = null;
  heldKeys.clear();
  paused = false;
  $("pause").textContent = "Pause";
  setControls(false);
}

// ----- messages from the server -----------------------------------------------------------------------------

function onMessage(msg) {
  switch (msg.type) {
    case "answer":
      fps = msg.fps;
      pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
      setStatus(`session ${msg.session}: waiting for the first frame…`);
      break;
    case "applied": {
      const edit = pendingEdits.get(msg.id);
      pendingEdits.delete(msg.id);
      if (edit !== undefined) appliedAt.push({ slot: msg.frame, ...edit });
      break;
    }
    case "stats":
      window.sanaStats.server = msg;
      $("stat-gen").textContent = msg.generated_fps.toFixed(1);
      $("stat-queue").textContent = msg.queued_frames;
      break;
    case "error":
      setStatus(msg.message, true);
      break;
  }
}

// ----- frames as they are shown -----------------------------------------------------------------------------

function onFrame(now, meta) {
  const stats = window.sanaStats;
  stats.framesShown += 1;
  if (stats.firstFrameMs === null) {
    stats.firstFrameMs = now - startedAt;
    $("stat-first").textContent = `${stats.firstFrameMs.toFixed(0)} ms`;
    setStatus("streaming");
  }
  if (meta.rtpTimestamp !== undefined) {
    if (rtpOrigin === null) rtpOrigin = meta.rtpTimestamp;
    const slot = Math.round(((meta.rtpTimestamp - rtpOrigin) >>> 0) * fps / 90000); // >>> 0: RTP time wraps
    stats.lastSlot = slot;
    for (let i = appliedAt.length - 1; i >= 0; i--) {
      if (slot >= appliedAt[i].slot) {
        const ms = now - appliedAt[i].sent;
        const action = appliedAt[i].kind === "action";
        (action ? stats.actionMs : stats.editMs).push(ms);
        $(action ? "stat-action" : "stat-edit").textContent = `${ms.toFixed(0)} ms`;
        appliedAt.splice(i, 1);
      }
    }
  }
  $("stat-size").textContent = `${video.videoWidth}×${video.videoHeight}`;
  video.requestVideoFrameCallback(onFrame);
}

function measureShownRate() {
  let last = window.sanaStats.framesShown;
  setInterval(() => {
    const shown = window.sanaStats.framesShown;
    $("stat-fps").textContent = pc ? String(shown - last) : "–";
    last = shown;
  }, 1000);
}

// ----- edits ------------------------------------------------------------------------------------------------

function edit(message) {
  const id = send(message);
  if (id !== null) pendingEdits.set(id, { sent: performance.now(), kind: message.type });
}

function sendPrompt(event) {
  event.preventDefault();
  const transition = Number($("transition").value) || 0;
  edit({ type: "prompt", text: $("prompt").value, ...(transition > 0 ? { transition } : {}) });
}

function sendImage() {
  const file = $("image").files[0];
  if (!file) return;
  if (file.size > MAX_IMAGE_BYTES) {
    setStatus(`that image is ${(file.size / 1048576).toFixed(1)} MB; the limit is 4 MB`, true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => edit({ type: "image", data: reader.result }); // a data: URL; the server strips its head
  reader.readAsDataURL(file);
  $("image").value = "";
}

function togglePause() {
  paused = !paused;
  send({ type: paused ? "pause" : "resume" });
  $("pause").textContent = paused ? "Resume" : "Pause";
}

function reset() {
  const seed = $("seed").value.trim();
  edit({ type: "reset", seed: seed === "" ? null : Number(seed) });
}

// ----- world mode: key edges, each with the time it happened ------------------------------------------------

function onKey(event) {
  if ($("mode").value !== "world" || !pc || event.target.tagName === "INPUT") return;
  const key = event.key.toLowerCase();
  if (!(key in OPPOSITE) || event.repeat) return;
  event.preventDefault();
  if (event.type === "keydown") {
    heldKeys.delete(OPPOSITE[key]); // the world refuses opposite keys together: the newer one wins
    heldKeys.add(key);
  } else {
    heldKeys.delete(key);
  }
  const keys = heldKeys.size ? [...heldKeys].sort().join("+") : "none";
  $("keys").textContent = keys;
  edit({ type: "action", keys, t: Math.max(0, Math.round(event.timeStamp)) });
}

// ----- wiring -----------------------------------------------------------------------------------------------

$("start-form").addEventListener("submit", start);
$("stop").addEventListener("click", stop);
$("prompt-form").addEventListener("submit", sendPrompt);
$("image").addEventListener("change", sendImage);
$("pause").addEventListener("click", togglePause);
$("reset").addEventListener("click", reset);
document.addEventListener("keydown", onKey);
document.addEventListener("keyup", onKey);
video.requestVideoFrameCallback(onFrame);
measureShownRate();
