// recall-frames' meeting replay: every participant's camera, the shared screen and
// everyone's sound at one moment of a recording, with a timeline to move through it.
// Loaded after app.js, whose helpers it uses (clock, wallClock, frameUrl, followLive,
// openingMoment, offerLink). Plain JavaScript, nothing from elsewhere.
//
// One clock drives everything: while sound plays it is the Web Audio context's, otherwise
// the page's. Frame lists come a minute of a stream at a time and sound ten seconds of a
// track at a time, as the playhead needs them, so a long meeting opens as fast as a short
// one.
"use strict";

(function replayPage() {
  if (document.body.dataset.page !== "replay") return;
  const { recording, timelineUrl } = document.body.dataset;
  const $ = (id) => document.getElementById(id);

  const SPEEDS = [0.25, 0.5, 1, 2, 4, 8];
  const CHUNK_MS = 60000; // frame lists are fetched a minute of a stream at a time
  const AUDIO_CHUNK_MS = 10000; // sound, ten seconds of a track at a time
  const AUDIO_AHEAD_MS = 20000; // sound fetched and scheduled this far ahead of the playhead
  const FRAMES_AHEAD_MS = 20000; // frame lists fetched this far ahead
  const HOLD_MS = 1000; // a run's last frame stays up this long
  const LIVE_FOR_MS = 10000; // a recording with a frame this recently is live
  const ADDRESS_EVERY_MS = 500; // ?t= is rewritten at most this often
  const TICK_MS = 250; // how often playback fetches and schedules what comes next
  const SPEAKING_LEVEL = 0.02; // without speech events: louder than this is speaking
  const STEP_MS = 5000;
  const FINE_STEP_MS = 1000;
  const START_LEAD_S = 0.02; // a source started now starts this much later, on time

  const replay = $("replay");
  const playButton = $("play");
  const speedSelect = $("speed");
  const scrubber = $("scrubber");
  const gallery = $("gallery");
  const stage = $("stage");
  const stageFrame = $("stage-frame");
  const liveButton = $("live");
  const trackList = $("track-list");
  const markerLane = $("marker-lane");
  const playhead = $("playhead");
  const preview = $("hover-preview");

  /** What the timeline says, then kept current by live events. */
  let timeline = null;
  let durationMs = 0;
  /** Participant id → their tile, track row, frame lists, sound and levels. */
  const people = new Map();
  /** `<participant>/<kind>` → its frame list, kept across refreshes of the timeline. */
  const lists = new Map();

  // ---- the clock ----

  let playing = false;
  let rate = 1;
  let anchorMs = 0; // the playhead at the anchor
  let anchorPerf = 0; // performance.now() at the anchor, in ms
  let anchorCtx = 0; // the audio context's time at the anchor, in s
  let following = false; // pinned to the live edge
  let liveEdge = 0;
  let lastLiveAt = 0;
  let touched = false; // the viewer moved the playhead: no automatic following
  let drawnMs = 0; // the playhead the tiles were last drawn for
  let addressTimer = null;

  const sound = startSound();

  /** Whether the audio context is the clock: while it runs. */
  const audioClock = () => sound.ctx !== null && sound.ctx.state === "running";

  function now() {
    if (!playing) return anchorMs;
    const elapsed = audioClock() ? (sound.ctx.currentTime - anchorCtx) * 1000 : performance.now() - anchorPerf;
    return Math.min(durationMs, anchorMs + elapsed * rate);
  }

  function anchor(ms) {
    anchorMs = ms;
    anchorPerf = performance.now();
    anchorCtx = sound.ctx ? sound.ctx.currentTime : 0;
  }

  // ---- frame lists ----

  /** A stream's frames, fetched a minute at a time; `runs` say where it had frames. */
  function frameList(participant, kind, info) {
    const key = `${participant}/${kind}`;
    let list = lists.get(key);
    if (!list) {
      list = {
        participant,
        kind,
        url: info.span_url,
        runs: [],
        chunks: new Map(), // minute → { promise, before, frames }
      };
      lists.set(key, list);
    }
    list.runs = info.runs.map((run) => [...run]);
    return list;
  }

  /** Fetches minute `index` of a list (once); resolves when it is there. */
  function loadChunk(list, index) {
    let chunk = list.chunks.get(index);
    if (chunk) return chunk.promise;
    chunk = { before: null, frames: null };
    chunk.promise = (async () => {
      const from = index * CHUNK_MS;
      const to = from + CHUNK_MS - 1;
      let next = from;
      const frames = [];
      let before = null;
      while (next !== null) {
        const response = await fetch(`${list.url}?from=${next}&to=${to}&limit=5000`);
        if (!response.ok) throw new Error(`listing frames answered ${response.status}`);
        const span = await response.json();
        if (next === from) before = span.before;
        frames.push(...span.frames);
        next = span.next_from;
      }
      // Frames that arrived live while this was on its way.
      for (const ms of chunk.early || []) insertSorted(frames, ms);
      chunk.before = before;
      chunk.frames = frames;
    })();
    chunk.promise.catch(() => list.chunks.delete(index));
    list.chunks.set(index, chunk);
    return chunk.promise;
  }

  function insertSorted(array, value) {
    let at = array.length;
    while (at > 0 && array[at - 1] > value) at--;
    if (at > 0 && array[at - 1] === value) return;
    array.splice(at, 0, value);
  }

  /** The last element of sorted `array` at or below `value`, or -1. */
  function lastAtOrBelow(array, value, get = (x) => x) {
    let low = 0;
    let high = array.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (get(array[middle]) <= value) {
        found = middle;
        low = middle + 1;
      } else high = middle - 1;
    }
    return found;
  }

  /** The frame on screen at `ms`: its ms, null for none, undefined while its minute loads. */
  function frameAt(list, ms) {
    const index = Math.floor(ms / CHUNK_MS);
    const chunk = list.chunks.get(index);
    if (!chunk || !chunk.frames) {
      loadChunk(list, index).catch(() => {});
      return undefined;
    }
    const at = lastAtOrBelow(chunk.frames, ms);
    return at >= 0 ? chunk.frames[at] : chunk.before;
  }

  /** The run of frames `ms` falls in (its last frame held a little), or null. */
  function runAt(list, ms) {
    const at = lastAtOrBelow(list.runs, ms, (run) => run[0]);
    if (at < 0) return null;
    const run = list.runs[at];
    return ms <= run[1] + HOLD_MS ? run : null;
  }

  /** A frame saved while the page is open. */
  function addFrame(list, ms) {
    const index = Math.floor(ms / CHUNK_MS);
    const chunk = list.chunks.get(index);
    if (chunk && chunk.frames) insertSorted(chunk.frames, ms);
    else if (chunk) (chunk.early ||= []).push(ms);
    for (const [later, other] of list.chunks) {
      if (later > index && other.frames && (other.before === null || other.before < ms)) other.before = ms;
    }
    const at = lastAtOrBelow(list.runs, ms, (run) => run[0]);
    const run = at >= 0 ? list.runs[at] : null;
    if (run && ms <= run[1] + 2500) run[1] = Math.max(run[1], ms);
    else list.runs.splice(at + 1, 0, [ms, ms]);
  }

  /** Fetches the frame lists every visible stream needs from `ms` to `ms + ahead`. */
  function loadAround(ms, ahead = 0) {
    const waits = [];
    for (const list of lists.values()) {
      for (let index = Math.floor(ms / CHUNK_MS); index <= Math.floor((ms + ahead) / CHUNK_MS); index++) {
        if (index * CHUNK_MS > durationMs + CHUNK_MS) break;
        waits.push(loadChunk(list, index).catch(() => {}));
      }
    }
    return Promise.all(waits);
  }

  // ---- sound ----

  /** Web Audio: a gain per participant into one output, with a meter on it. */
  function startSound() {
    const state = { ctx: null, master: null, meter: null, sources: new Set() };
    try {
      state.ctx = new AudioContext();
      state.master = state.ctx.createGain();
      state.meter = state.ctx.createAnalyser();
      state.meter.fftSize = 2048;
      state.master.connect(state.meter);
      state.meter.connect(state.ctx.destination);
      state.ctx.addEventListener("statechange", () => {
        // The context started (or stopped) while playing: carry on from the same moment.
        if (!playing) return;
        const t = anchorMs + (performance.now() - anchorPerf) * rate;
        anchor(Math.min(durationMs, t));
        restartSound();
      });
    } catch {
      state.ctx = null; // no Web Audio: the frames play without sound
    }
    return state;
  }

  /** Ten seconds of a participant's track as an AudioBuffer; null where it is silent. */
  function audioChunk(person, index) {
    let entry = person.audioChunks.get(index);
    if (entry) return entry;
    entry = { ready: false, buffer: null };
    person.audioChunks.set(index, entry);
    const track = person.info.audio;
    const from = index * AUDIO_CHUNK_MS;
    const to = Math.min(from + AUDIO_CHUNK_MS, track.end_ms);
    const heard = track.runs.some(([a, b]) => a < to && b > from);
    if (!heard || to <= from || !sound.ctx) {
      entry.ready = true;
      return entry;
    }
    const perMs = track.sample_rate / 1000;
    const first = track.header_bytes + from * perMs * 2;
    const last = track.header_bytes + to * perMs * 2 - 1;
    fetch(track.wav_url, { headers: { range: `bytes=${first}-${last}` } })
      .then((response) => {
        if (response.status !== 206) throw new Error(`audio answered ${response.status}`);
        return response.arrayBuffer();
      })
      .then((bytes) => {
        const view = new DataView(bytes);
        const samples = new Float32Array(Math.floor(bytes.byteLength / 2));
        for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true) / 32768;
        if (samples.length > 0) {
          entry.buffer = sound.ctx.createBuffer(1, samples.length, track.sample_rate);
          entry.buffer.copyToChannel(samples, 0);
        }
        entry.ready = true;
        if (playing) scheduleSound();
      })
      .catch(() => {
        // Tried again at the next tick.
        person.audioChunks.delete(index);
      });
    return entry;
  }

  /** Starts every loaded chunk of sound due within AUDIO_AHEAD_MS, each exactly on time. */
  function scheduleSound() {
    if (!playing || following || !audioClock()) return;
    const t = now();
    const ctx = sound.ctx;
    for (const person of people.values()) {
      if (!person.info.audio) continue;
      const last = Math.floor((t + AUDIO_AHEAD_MS * Math.max(1, rate / 2)) / AUDIO_CHUNK_MS);
      for (let index = Math.floor(t / AUDIO_CHUNK_MS); index <= last; index++) {
        if (person.scheduled.has(index)) continue;
        const entry = audioChunk(person, index);
        if (!entry.ready) continue;
        person.scheduled.add(index);
        if (!entry.buffer) continue;
        // When this chunk's first sample plays on the context's clock.
        const when = anchorCtx + (index * AUDIO_CHUNK_MS - anchorMs) / 1000 / rate;
        const start = Math.max(when, ctx.currentTime + START_LEAD_S);
        const offset = (start - when) * rate;
        if (offset >= entry.buffer.duration) continue;
        const node = ctx.createBufferSource();
        node.buffer = entry.buffer;
        node.playbackRate.value = rate;
        node.connect(person.gain);
        node.start(start, offset);
        const source = { node, person, from: index * AUDIO_CHUNK_MS };
        sound.sources.add(source);
        node.addEventListener("ended", () => sound.sources.delete(source));
      }
    }
  }

  function stopSound() {
    for (const { node } of sound.sources) {
      try {
        node.stop();
      } catch {
        // Never started.
      }
    }
    sound.sources.clear();
    for (const person of people.values()) person.scheduled.clear();
  }

  function restartSound() {
    stopSound();
    scheduleSound();
  }

  /** Mute and solo: with any solo on, only the soloed are heard. */
  function applyGains() {
    const soloing = [...people.values()].some((p) => p.solo);
    for (const person of people.values()) {
      const heard = soloing ? person.solo : !person.muted;
      person.gain?.gain.setValueAtTime(heard ? 1 : 0, sound.ctx.currentTime);
      person.row.dataset.heard = String(heard);
    }
  }

  /** How loud the output is now (RMS of the last ~40 ms), for the debug hook. */
  function outputLevel() {
    if (!sound.meter) return 0;
    const samples = new Float32Array(sound.meter.fftSize);
    sound.meter.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    return Math.sqrt(sum / samples.length);
  }

  // ---- the people ----

  function displayName(info) {
    return info.name && info.name.trim() ? info.name : `Participant ${info.id}`;
  }

  function initials(name) {
    return name
      .split(/\s+/)
      .filter(Boolean)
      .slice(0, 2)
      .map((word) => word[0].toUpperCase())
      .join("");
  }

  /** Makes or updates a participant's tile and track row from the timeline. */
  function person(info) {
    let p = people.get(info.id);
    if (!p) {
      p = { id: info.id, audioChunks: new Map(), scheduled: new Set(), muted: false, solo: false, levels: null };
      p.tile = document.createElement("li");
      p.tile.className = "tile";
      p.tile.dataset.participant = info.id;
      p.tile.hidden = true;
      p.img = document.createElement("img");
      p.img.className = "tile-frame";
      p.img.alt = "";
      p.placeholder = document.createElement("span");
      p.placeholder.className = "tile-placeholder";
      p.placeholder.setAttribute("aria-hidden", "true");
      p.caption = document.createElement("span");
      p.caption.className = "tile-name";
      p.speaking = document.createElement("span");
      p.speaking.className = "speaking";
      p.speaking.dataset.speaking = "false";
      p.tile.append(p.img, p.placeholder, p.caption, p.speaking);
      gallery.append(p.tile);
      p.row = trackRow(p);
      trackList.append(p.row);
      if (sound.ctx) {
        p.gain = sound.ctx.createGain();
        p.gain.connect(sound.master);
      }
      people.set(info.id, p);
    }
    p.info = info;
    p.name = displayName(info);
    p.placeholder.textContent = initials(p.name) || "?";
    p.caption.replaceChildren(p.name);
    if (info.is_host) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "Host";
      p.caption.append(" ", badge);
    }
    p.webcam = info.webcam ? frameList(info.id, "webcam", info.webcam) : null;
    p.screenshare = info.screenshare ? frameList(info.id, "screenshare", info.screenshare) : null;
    p.row.querySelector(".track-name").textContent = p.name;
    p.row.querySelector(".mute").hidden = !info.audio;
    p.row.querySelector(".solo").hidden = !info.audio;
    drawTrack(p);
    if (info.audio && !timeline.speech_events && !p.levels) loadLevels(p);
    return p;
  }

  function trackRow(p) {
    const row = document.createElement("li");
    row.className = "track";
    row.dataset.participant = p.id;
    const head = document.createElement("div");
    head.className = "track-head";
    const name = document.createElement("span");
    name.className = "track-name";
    const toggles = ["mute", "solo"].map((what) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = `toggle ${what}`;
      button.textContent = what === "mute" ? "Mute" : "Solo";
      button.setAttribute("aria-pressed", "false");
      button.addEventListener("click", () => {
        p[what === "mute" ? "muted" : "solo"] = !p[what === "mute" ? "muted" : "solo"];
        button.setAttribute("aria-pressed", String(what === "mute" ? p.muted : p.solo));
        if (sound.ctx) applyGains();
      });
      return button;
    });
    head.append(name, ...toggles);
    const bar = document.createElement("div");
    bar.className = "track-bar";
    bar.dataset.participant = p.id;
    row.append(head, bar);
    return row;
  }

  /** The participant's lanes: presence, camera, screen share, speech. */
  function drawTrack(p) {
    const bar = p.row.querySelector(".track-bar");
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    const width = Math.max(1, durationMs);
    svg.setAttribute("viewBox", `0 0 ${width} 40`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    const lane = (spans, y, height, kind) => {
      for (const [from, to] of spans) {
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", from);
        rect.setAttribute("y", y);
        rect.setAttribute("width", Math.max((to ?? durationMs) - from, width / 800));
        rect.setAttribute("height", height);
        rect.setAttribute("class", kind);
        svg.append(rect);
      }
    };
    lane(p.info.present, 0, 40, "present");
    if (p.webcam) lane(p.webcam.runs, 4, 12, "camera");
    if (p.screenshare) lane(p.screenshare.runs, 18, 10, "share");
    lane(speech(p), 31, 6, "speech");
    bar.replaceChildren(svg);
    const label = [
      p.webcam ? "camera" : null,
      p.screenshare ? "screen share" : null,
      speech(p).length ? "speech" : null,
    ].filter(Boolean);
    bar.setAttribute("aria-label", `${p.name}: ${label.join(", ") || "no camera"}`);
  }

  async function loadLevels(p) {
    const buckets = Math.max(1, Math.min(4000, Math.ceil(p.info.audio.end_ms / 250)));
    p.levels = { bucketMs: 0, levels: [] };
    try {
      const response = await fetch(`${p.info.audio.levels_url}?buckets=${buckets}`);
      if (!response.ok) return;
      const { levels, bucket_seconds: seconds } = await response.json();
      p.levels = { bucketMs: seconds * 1000, levels };
      {
        // Speech read off the levels, for the indicator and the track.
        const spans = [];
        levels.forEach((level, i) => {
          if (level <= SPEAKING_LEVEL) return;
          const from = Math.round(i * seconds * 1000);
          const last = spans[spans.length - 1];
          if (last && last[1] >= from) last[1] = Math.round((i + 1) * seconds * 1000);
          else spans.push([from, Math.round((i + 1) * seconds * 1000)]);
        });
        p.levelSpeech = spans;
        drawTrack(p);
      }
    } catch {
      // No indicator from levels; the rest plays on.
    }
  }

  const inSpans = (spans, ms) => spans.some(([from, to]) => from <= ms && (to === null || ms < to));

  /** When they spoke: from speech events, or else from their audio's levels. */
  const speech = (p) => (timeline.speech_events ? p.info.speech : p.levelSpeech || []);

  function speakingAt(p, ms) {
    return inSpans(speech(p), ms);
  }

  // ---- drawing a moment ----

  function draw(ms) {
    drawnMs = ms;
    let anyone = false;
    let share = null;
    for (const p of people.values()) {
      const present = inSpans(p.info.present, ms);
      p.tile.hidden = !present;
      if (!present) continue;
      anyone = true;
      const run = p.webcam ? runAt(p.webcam, ms) : null;
      const frame = run ? frameAt(p.webcam, ms) : null;
      if (frame === undefined) {
        p.tile.dataset.camera = "loading";
      } else if (frame !== null && frame >= run[0]) {
        showFrame(p.img, p.webcam, frame);
        p.tile.dataset.camera = "on";
      } else {
        p.tile.dataset.camera = "off";
        p.img.removeAttribute("src");
        delete p.img.dataset.ms;
      }
      const speaking = speakingAt(p, ms);
      if (p.speaking.dataset.speaking !== String(speaking)) {
        p.speaking.dataset.speaking = String(speaking);
        p.tile.classList.toggle("is-speaking", speaking);
      }
      const shareRun = p.screenshare ? runAt(p.screenshare, ms) : null;
      if (shareRun && (!share || shareRun[0] > share.run[0])) share = { p, run: shareRun };
    }
    if (share) {
      const frame = frameAt(share.p.screenshare, ms);
      if (frame !== undefined && frame !== null && frame >= share.run[0]) {
        showFrame(stageFrame, share.p.screenshare, frame);
        stage.hidden = false;
        stage.dataset.participant = share.p.id;
        $("stage-label").textContent = `${share.p.name} is sharing the screen`;
      } else if (frame !== undefined) share = null;
    }
    if (!share) {
      stage.hidden = true;
      delete stage.dataset.participant;
    }
    replay.classList.toggle("sharing", !!share);
    $("room-empty").hidden = anyone || people.size === 0;
    $("time").textContent = clock(ms / 1000);
    if (document.activeElement !== scrubber || !playing) scrubber.value = Math.round(ms);
    scrubber.setAttribute("aria-valuetext", clock(ms / 1000));
    playhead.style.left = `${(100 * ms) / Math.max(1, durationMs)}%`;
  }

  function showFrame(img, list, ms) {
    if (img.dataset.ms === String(ms) && img.dataset.stream === `${list.participant}/${list.kind}`) return;
    img.dataset.ms = ms;
    img.dataset.stream = `${list.participant}/${list.kind}`;
    img.src = frameUrl(recording, list.participant, list.kind, ms);
  }

  /** The next frame of each shown stream, fetched before it is due. */
  function preloadNext(ms) {
    for (const p of people.values()) {
      for (const list of [p.webcam, p.screenshare]) {
        if (!list || !runAt(list, ms)) continue;
        const chunk = list.chunks.get(Math.floor(ms / CHUNK_MS));
        if (!chunk || !chunk.frames) continue;
        const next = chunk.frames[lastAtOrBelow(chunk.frames, ms) + 1];
        if (next !== undefined && list.preloaded !== next) {
          list.preloaded = next;
          new Image().src = frameUrl(recording, list.participant, list.kind, next);
        }
      }
    }
  }

  // ---- playing ----

  let frameRequest = null;

  function loop() {
    frameRequest = null;
    const ms = now();
    draw(ms);
    if (playing) {
      preloadNext(ms);
      if (ms >= durationMs) {
        if (Date.now() - lastLiveAt < LIVE_FOR_MS) followLiveEdge();
        else pause();
      }
      keepInAddress();
    }
    if (playing) frameRequest = requestAnimationFrame(loop);
  }

  function redraw() {
    if (frameRequest === null) frameRequest = requestAnimationFrame(loop);
  }

  let ticker = null;

  function tick() {
    const ms = now();
    loadAround(ms, FRAMES_AHEAD_MS * Math.max(1, rate / 2));
    scheduleSound();
    forgetSound(ms);
  }

  /** Lets go of sound far from the playhead: ten seconds of a track is 640 KB decoded. */
  function forgetSound(ms) {
    const here = Math.floor(ms / AUDIO_CHUNK_MS);
    const ahead = Math.ceil((AUDIO_AHEAD_MS * Math.max(1, rate / 2)) / AUDIO_CHUNK_MS) + 1;
    for (const p of people.values()) {
      for (const index of p.audioChunks.keys()) {
        // Behind: played, never scheduled again. Far ahead (after a seek back): not yet.
        if (index < here - 1) {
          p.audioChunks.delete(index);
          p.scheduled.delete(index);
        } else if (index > here + ahead && !p.scheduled.has(index)) p.audioChunks.delete(index);
      }
    }
  }

  function play() {
    touched = true;
    if (following) stopFollowing();
    if (now() >= durationMs) anchor(0);
    sound.ctx?.resume().catch(() => {});
    anchor(now());
    playing = true;
    playButton.textContent = "Pause";
    playButton.setAttribute("aria-pressed", "true");
    restartSound();
    clearInterval(ticker);
    ticker = setInterval(tick, TICK_MS);
    tick();
    redraw();
  }

  function pause() {
    const ms = now();
    playing = false;
    anchor(ms);
    stopSound();
    clearInterval(ticker);
    playButton.textContent = "Play";
    playButton.setAttribute("aria-pressed", "false");
    draw(ms);
    keepInAddress();
  }

  /** Moves the playhead; resolves once the frames there are listed and drawn. */
  function seek(ms) {
    touched = true;
    if (following) stopFollowing();
    const target = Math.max(0, Math.min(durationMs, Math.round(ms)));
    anchor(target);
    if (playing) restartSound();
    draw(target);
    keepInAddress();
    $("share").hidden = true;
    say("");
    return loadAround(target).then(() => {
      if (!playing && anchorMs === target) draw(target);
    });
  }

  function setRate(value) {
    const ms = now();
    rate = value;
    speedSelect.value = String(value);
    anchor(ms);
    if (playing) restartSound();
  }

  function changeSpeed(by) {
    const at = SPEEDS.indexOf(rate);
    const next = SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, (at < 0 ? 2 : at) + by))];
    setRate(next);
    say(`Speed ${next}×`);
  }

  // ---- live ----

  function isLive() {
    return Date.now() - lastLiveAt < LIVE_FOR_MS;
  }

  function followLiveEdge() {
    following = true;
    if (playing) {
      playing = false;
      stopSound();
      clearInterval(ticker);
      playButton.textContent = "Play";
    }
    replay.dataset.live = "following";
    liveButton.textContent = "Live";
    liveButton.setAttribute("aria-pressed", "true");
    anchor(Math.min(durationMs, liveEdge));
    loadAround(anchorMs).then(() => following && draw(anchorMs));
    draw(anchorMs);
  }

  function stopFollowing() {
    following = false;
    replay.dataset.live = isLive() ? "behind" : "off";
    liveButton.textContent = "Jump to live";
    liveButton.setAttribute("aria-pressed", "false");
  }

  function showLiveButton() {
    liveButton.hidden = !isLive();
    if (!isLive() && !following) replay.dataset.live = "off";
  }

  let refreshing = null;

  /** Fetches the timeline again (a new participant): at most one at a time. */
  function refreshTimeline() {
    if (refreshing) return refreshing;
    refreshing = loadTimeline().finally(() => {
      refreshing = null;
    });
    return refreshing;
  }

  function arrive(event) {
    lastLiveAt = Date.now();
    liveEdge = Math.max(liveEdge, event.relative_ms);
    if (event.relative_ms > durationMs) setDuration(event.relative_ms);
    const p = people.get(event.participant);
    const list = p && p[event.kind];
    if (!list) {
      refreshTimeline().then(() => {
        if (following) followLiveEdge();
      });
      return;
    }
    addFrame(list, event.relative_ms);
    if (p.info.present.length && p.info.present[p.info.present.length - 1][1] !== null && !inSpans(p.info.present, event.relative_ms)) {
      refreshTimeline();
    }
    if (!touched && !following) followLiveEdge();
    if (following) followLiveEdge();
    else if (!playing) draw(anchorMs);
    showLiveButton();
  }

  // ---- the timeline ----

  function setDuration(ms) {
    durationMs = ms;
    scrubber.max = String(ms);
    $("duration").textContent = clock(ms / 1000);
    for (const marker of markerLane.children) {
      marker.style.left = `${(100 * Number(marker.dataset.at)) / Math.max(1, ms)}%`;
    }
  }

  const markerWords = { join: "joined", leave: "left", chat: "wrote" };

  function drawMarkers() {
    const list = $("moments");
    markerLane.replaceChildren();
    list.replaceChildren();
    for (const marker of timeline.markers) {
      const who = displayName({ id: marker.participant, name: marker.name });
      const what = marker.kind === "chat" ? `${who} wrote: ${marker.text}` : `${who} ${markerWords[marker.kind]}`;
      const pin = document.createElement("button");
      pin.type = "button";
      pin.className = `marker ${marker.kind}`;
      pin.dataset.at = marker.at_ms;
      pin.tabIndex = -1;
      pin.title = `${clock(marker.at_ms / 1000)} · ${what}`;
      pin.style.left = `${(100 * marker.at_ms) / Math.max(1, durationMs)}%`;
      markerLane.append(pin);
      const item = document.createElement("li");
      item.className = `moment ${marker.kind}`;
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.at = marker.at_ms;
      const time = document.createElement("time");
      time.textContent = clock(marker.at_ms / 1000);
      button.append(time, " ", what);
      item.append(button);
      list.append(item);
    }
    markerLane.setAttribute("aria-hidden", "true");
  }

  async function loadTimeline() {
    const response = await fetch(timelineUrl);
    if (!response.ok) throw new Error(`the timeline answered ${response.status}`);
    timeline = await response.json();
    setDuration(Math.max(timeline.duration_ms, liveEdge));
    for (const info of timeline.participants) person(info);
    for (const p of people.values()) drawTrack(p);
    drawMarkers();
    if (sound.ctx) applyGains();
  }

  // ---- hovering the timeline ----

  let hoverAt = null;

  function hover(event, participant) {
    const box = event.currentTarget.getBoundingClientRect();
    const share = Math.max(0, Math.min(1, (event.clientX - box.left) / box.width));
    const ms = Math.round(share * durationMs);
    hoverAt = ms;
    const p = participant !== undefined ? people.get(participant) : null;
    // A participant's track shows their camera (or screen); the scrubber, the screen
    // shared then, or else the first camera on.
    const candidates = p
      ? [p.webcam, p.screenshare]
      : [...people.values()].flatMap((q) => [q.screenshare]).concat([...people.values()].map((q) => q.webcam));
    const list = candidates.find((l) => l && runAt(l, ms));
    $("hover-time").textContent = `${clock(ms / 1000)}${p ? ` · ${p.name}` : ""}`;
    const tracks = $("tracks").getBoundingClientRect();
    preview.style.left = `${Math.max(0, Math.min(tracks.width - 160, event.clientX - tracks.left - 80))}px`;
    preview.hidden = false;
    const img = $("hover-frame");
    if (!list) {
      img.removeAttribute("src");
      preview.dataset.frame = "none";
      return;
    }
    const show = () => {
      if (hoverAt !== ms) return;
      const frame = frameAt(list, ms);
      if (frame === undefined || frame === null) return;
      preview.dataset.frame = `${list.participant}/${list.kind}/${frame}`;
      img.src = frameUrl(recording, list.participant, list.kind, frame);
    };
    if (frameAt(list, ms) === undefined) loadChunk(list, Math.floor(ms / CHUNK_MS)).then(show, () => {});
    else show();
  }

  function unhover() {
    hoverAt = null;
    preview.hidden = true;
  }

  function timeAt(event, element) {
    const box = element.getBoundingClientRect();
    return Math.round(Math.max(0, Math.min(1, (event.clientX - box.left) / box.width)) * durationMs);
  }

  // ---- the address ----

  function keepInAddress() {
    if (addressTimer) return;
    addressTimer = setTimeout(() => {
      addressTimer = null;
      history.replaceState(history.state, "", linkTo(now()));
    }, ADDRESS_EVERY_MS);
  }

  function linkTo(ms) {
    const url = new URL(location.href);
    url.searchParams.set("t", String(Math.round(ms) / 1000));
    url.hash = "";
    return url.href;
  }

  function say(text) {
    $("status").textContent = text;
  }

  // ---- wiring ----

  playButton.addEventListener("click", () => (playing ? pause() : play()));
  speedSelect.addEventListener("change", () => setRate(Number(speedSelect.value)));
  scrubber.addEventListener("input", () => seek(Number(scrubber.value)));
  liveButton.addEventListener("click", () => {
    touched = true;
    followLiveEdge();
  });
  $("copy-link").addEventListener("click", () => {
    const ms = now();
    offerLink(linkTo(ms), clock(ms / 1000), { share: $("share"), input: $("share-link"), status: $("status") });
  });
  $("moments").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-at]");
    if (button) seek(Number(button.dataset.at));
  });
  markerLane.addEventListener("click", (event) => {
    const pin = event.target.closest("button[data-at]");
    if (pin) seek(Number(pin.dataset.at));
    else seek(timeAt(event, markerLane));
  });
  trackList.addEventListener("click", (event) => {
    const bar = event.target.closest(".track-bar");
    if (bar) seek(timeAt(event, bar));
  });
  trackList.addEventListener("mousemove", (event) => {
    const bar = event.target.closest(".track-bar");
    if (!bar) return unhover();
    hover({ currentTarget: bar, clientX: event.clientX }, Number(bar.dataset.participant));
  });
  trackList.addEventListener("mouseleave", unhover);
  scrubber.addEventListener("mousemove", (event) => hover(event));
  scrubber.addEventListener("mouseleave", unhover);

  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input:not([type=range]), select, textarea");
    if (typing || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest("button, summary, a") && (event.key === " " || event.key === "Enter")) return;
    const step = event.shiftKey ? FINE_STEP_MS : STEP_MS;
    const keys = {
      " ": () => (playing ? pause() : play()),
      k: () => (playing ? pause() : play()),
      j: () => changeSpeed(-1),
      l: () => {
        if (!playing) play();
        else changeSpeed(1);
      },
      ArrowLeft: () => seek(now() - step),
      ArrowRight: () => seek(now() + step),
      Home: () => seek(0),
      End: () => seek(durationMs),
    };
    const action = keys[event.key.length === 1 ? event.key.toLowerCase() : event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });
  window.addEventListener("pagehide", () => sound.ctx?.close());

  // Read-only, for tests and the curious: where the sound and the pictures are.
  Object.defineProperty(window, "replayClock", {
    value: () => {
      const audible = playing && audioClock() && sound.sources.size > 0;
      return {
        playing,
        following,
        rate,
        audio_state: sound.ctx ? sound.ctx.state : "none",
        // Where the sound is: the audio context's clock through the sources' schedule.
        audio_ms: audible ? anchorMs + (sound.ctx.currentTime - anchorCtx) * 1000 * rate : null,
        // Where the pictures are: the moment the tiles were last drawn for.
        frame_ms: drawnMs,
        sources: sound.sources.size,
        level: outputLevel(),
        shown: Object.fromEntries(
          [...people.values()].map((p) => [p.id, p.tile.hidden ? "absent" : p.img.dataset.ms ? Number(p.img.dataset.ms) : null]),
        ),
        stage: stage.hidden ? null : Number(stageFrame.dataset.ms),
      };
    },
    writable: false,
    configurable: false,
  });

  const early = [];
  let ready = false;
  followLive(recording, {
    frame: (event) => (ready ? arrive(event) : early.push(event)),
    participant: () => ready && refreshTimeline(),
    lagged: () => ready && refreshTimeline(),
  });
  setInterval(showLiveButton, 1000);

  const opening = openingMoment();
  const started = performance.now();
  loadTimeline()
    .then(() => {
      if (opening !== null) touched = true;
      const at = Math.min(opening ?? 0, durationMs);
      anchor(at);
      return loadAround(at).then(() => {
        draw(at);
        ready = true;
        replay.dataset.state = "ready";
        replay.dataset.openedInMs = String(Math.round(performance.now() - started));
        early.splice(0).forEach(arrive);
      });
    })
    .catch((error) => {
      replay.dataset.state = "failed";
      say(`Could not load the meeting (${error.message})`);
    });
})();
