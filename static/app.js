// recall-frames in the browser: live updates on every page, and the frame player.
// Plain JavaScript served by the server itself; no build step, nothing from elsewhere.
"use strict";

// ---- formatting, as the server formats ----

/** 75.25 → "1:15.250"; an hour or more → "1:01:15.250". */
function clock(seconds) {
  const ms = Math.round(Math.max(0, seconds) * 1000);
  const h = Math.floor(ms / 3600000);
  const m = Math.floor(ms / 60000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  const rest = `${String(s).padStart(2, "0")}.${String(ms % 1000).padStart(3, "0")}`;
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/** "2026-11-21T10:00:12.5Z" → "2026-11-21 10:00:12.500 UTC". */
function wallClock(iso) {
  if (!iso) return "–";
  return new Date(iso).toISOString().replace("T", " ").replace("Z", " UTC");
}

function plural(n, one, many) {
  return n === 1 ? `1 ${one}` : `${n} ${many}`;
}

function frameUrl(recording, participant, kind, ms) {
  return `/api/recordings/${recording}/${participant}/${kind}/${String(ms).padStart(9, "0")}.png`;
}

// ---- links to a moment (the stream player and the replay) ----

/** ?t= of the address the page was opened at, in milliseconds; null if absent or not a time. */
function openingMoment() {
  const t = new URLSearchParams(location.search).get("t");
  const s = t === null || t.trim() === "" ? NaN : Number(t);
  return Number.isFinite(s) && s >= 0 ? Math.round(s * 1000) : null;
}

/**
 * Puts `link` in the address and copies it; where the clipboard cannot be used (plain http
 * to another machine, a refusal), shows it in `share`'s `input`, selected, to copy by hand.
 * `status` says which, naming the moment as `when`.
 */
async function offerLink(link, when, { share, input, status }) {
  history.replaceState(history.state, "", link);
  try {
    if (!window.isSecureContext || !navigator.clipboard) throw new Error("no clipboard here");
    await navigator.clipboard.writeText(link);
    share.hidden = true;
    status.textContent = `Link to ${when} copied`;
  } catch {
    input.value = link;
    share.hidden = false;
    input.focus();
    input.select();
    status.textContent = `The clipboard is not available here: copy the selected link to ${when}`;
  }
}

// ---- live updates ----

/** Follows the server's live events (of one recording, or all) with the given handlers. */
function followLive(recording, handlers) {
  const status = document.getElementById("live-status");
  const show = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
  };
  const url = recording ? `/api/live?recording=${encodeURIComponent(recording)}` : "/api/live";
  const source = new EventSource(url);
  source.addEventListener("ready", () => show("on", "Live"));
  source.addEventListener("error", () => show("off", "Reconnecting…"));
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => handle(JSON.parse(event.data)));
  }
  window.addEventListener("pagehide", () => source.close());
}

let refreshTimer = null;

/** Fetches this page again and swaps in its main content: how new things appear. */
function refreshMain() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    try {
      const response = await fetch(location.href, { headers: { accept: "text/html" } });
      if (!response.ok) return;
      const fresh = new DOMParser()
        .parseFromString(await response.text(), "text/html")
        .getElementById("main");
      if (fresh) document.getElementById("main").replaceChildren(...fresh.childNodes);
      drawAudioBars();
    } finally {
      refreshTimer = null;
    }
  }, 300);
}

/** Adds one to a counter element that keeps its number in data-frames. */
function countFrame(element) {
  if (!element) return;
  const n = Number(element.dataset.frames) + 1;
  element.dataset.frames = n;
  element.textContent = plural(n, "frame", "frames");
}

// ---- deleting ----

/** Says on the page that what it shows was deleted, with a way back to the list. */
function showDeleted(text) {
  const notice = document.createElement("section");
  notice.className = "empty";
  const heading = document.createElement("h2");
  heading.textContent = text;
  const back = document.createElement("p");
  const link = document.createElement("a");
  link.href = "/";
  link.textContent = "Back to the recordings";
  back.append(link);
  notice.append(heading, back);
  document.getElementById("main").replaceChildren(notice);
}

/**
 * Delete buttons (`data-delete-url`, `data-what`): asked once, and once more with force
 * when a bot is still streaming (409). Listened for on the document, so that buttons in
 * content swapped in by live updates work too.
 */
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-delete-url]");
  if (!button) return;
  const what = button.dataset.what;
  if (!confirm(`Delete ${what}? Its frames, audio and events are removed for good.`)) return;
  button.disabled = true;
  try {
    let response = await fetch(button.dataset.deleteUrl, { method: "DELETE" });
    if (response.status === 409) {
      const { error } = await response.json();
      if (!confirm(`${error}\n\nDelete it anyway? What the bot sends next is refused.`)) return;
      response = await fetch(`${button.dataset.deleteUrl}?force=true`, { method: "DELETE" });
    }
    if (!response.ok) {
      const { error } = await response.json().catch(() => ({ error: response.statusText }));
      alert(`Could not delete ${what}: ${error}`);
      return;
    }
    if (button.id === "delete-recording") {
      location.assign("/");
    } else {
      refreshMain();
    }
  } finally {
    button.disabled = false;
  }
});

// ---- pages ----

function indexPage() {
  followLive(null, {
    recording: refreshMain,
    lagged: refreshMain,
    deleted(event) {
      if (event.participant !== undefined) return refreshMain();
      document.querySelector(`[data-recording="${CSS.escape(event.recording)}"]`)?.remove();
      refreshMain();
    },
    frame(frame) {
      const card = document.querySelector(`[data-recording="${CSS.escape(frame.recording)}"]`);
      if (!card) return refreshMain();
      countFrame(card.querySelector(".frame-count"));
      const thumb = card.querySelector(".thumb img");
      if (!thumb) return refreshMain();
      if (card.dataset.thumbnailStream === `${frame.participant}/${frame.kind}`) {
        thumb.src = frameUrl(frame.recording, frame.participant, frame.kind, frame.relative_ms);
      }
    },
  });
}

function recordingPage() {
  const recording = document.body.dataset.recording;
  drawAudioBars();
  followLive(recording, {
    lagged: refreshMain,
    deleted(event) {
      if (event.participant !== undefined) return refreshMain();
      showDeleted("This recording was deleted.");
    },
    participant(event) {
      if (!document.querySelector(`[data-participant="${event.participant.id}"]`)) refreshMain();
    },
    frame(frame) {
      const tile = document.querySelector(`[data-stream="${frame.participant}/${frame.kind}"]`);
      const img = tile && tile.querySelector("img");
      if (!img) return refreshMain();
      img.src = frameUrl(recording, frame.participant, frame.kind, frame.relative_ms);
      countFrame(tile.querySelector(".frame-count"));
      countFrame(document.querySelector(".page-head .frame-count"));
    },
  });
}

function streamPage() {
  const { recording, participant, kind, framesUrl } = document.body.dataset;
  const $ = (id) => document.getElementById(id);
  const screen = $("frame");
  const playButton = $("play");
  const speed = $("speed");
  const scrubber = $("scrubber");
  const strip = $("filmstrip");
  const copyButton = $("copy-link");
  const share = $("share");
  const shareLink = $("share-link");
  const copyStatus = $("copy-status");
  // The participant's audio, when there is some: while it plays, the frames follow it.
  const audio = $("audio") ? playerAudio($("audio"), $("audio-status")) : null;

  const MAX_PAUSE_MS = 3000; // longer gaps between frames are shortened
  const STRIP_LENGTH = 24; // thumbnails in the filmstrip
  const LIVE_FOR_MS = 10000; // a stream with a frame this recently is live
  const ADDRESS_EVERY_MS = 500; // ?t= in the address is rewritten at most this often
  const FOLLOW_AUDIO_MS = 40; // how often the frame shown catches up with the audio

  const frames = []; // {relative_ms, relative, absolute, url, ...} in time order
  let at = 0;
  let playing = false;
  let timer = null;
  let stripStart = -1;
  let lastLiveFrame = 0;
  let loaded = false;
  const early = []; // frames announced while the listing was loading
  let addressTimer = null;

  async function load() {
    let url = `${framesUrl}?limit=1000`;
    while (url) {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`listing frames answered ${response.status}`);
      const page = await response.json();
      frames.push(...page.frames);
      url = page.next;
    }
  }

  /** A frame's time as ?t= has it: its exact millisecond, in seconds. */
  const seconds = (frame) => String(frame.relative_ms / 1000);

  /** The address of this page at a frame. */
  function linkTo(frame) {
    const url = new URL(location.href);
    url.searchParams.set("t", seconds(frame));
    url.hash = "";
    return url.href;
  }

  /** The place of the frame at or before `ms`, or of the first frame if `ms` is earlier. */
  function placeAt(ms) {
    let low = 0;
    let high = frames.length - 1;
    while (low < high) {
      const middle = Math.ceil((low + high) / 2);
      if (frames[middle].relative_ms <= ms) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  /** Keeps ?t= on the frame shown, rewriting the address (not the history) at most every ADDRESS_EVERY_MS. */
  function keepInAddress() {
    if (addressTimer) return;
    addressTimer = setTimeout(() => {
      addressTimer = null;
      if (frames.length > 0) history.replaceState(history.state, "", linkTo(frames[at]));
    }, ADDRESS_EVERY_MS);
  }

  /**
   * Shows a frame at its own size at most: the image's width and height are the frame's, and
   * the style sheet only ever scales it down (a narrow window, a short one), never up.
   */
  function size(frame) {
    if (!frame.width || !frame.height) return;
    if (screen.width !== frame.width) screen.width = frame.width;
    if (screen.height !== frame.height) screen.height = frame.height;
  }

  /**
   * Shows the frame at `index`; `moved` (the default) also keeps it in the address. The audio
   * moves to the frame too, unless it is what moved the player (`byAudio`).
   */
  function show(index, moved = true, byAudio = false) {
    if (frames.length === 0) return;
    at = Math.max(0, Math.min(index, frames.length - 1));
    const frame = frames[at];
    if (audio && !byAudio) audio.seek(frame.relative_ms);
    size(frame);
    screen.src = frame.url;
    screen.alt = `Frame at ${clock(frame.relative)}`;
    $("relative").textContent = clock(frame.relative);
    $("absolute").textContent = wallClock(frame.absolute);
    $("position").textContent = `${at + 1} of ${frames.length}`;
    scrubber.max = frames.length - 1;
    scrubber.value = at;
    scrubber.setAttribute("aria-valuetext", `${clock(frame.relative)}, frame ${at + 1} of ${frames.length}`);
    drawStrip();
    if (at + 1 < frames.length) new Image().src = frames[at + 1].url; // preload
    if (moved) {
      keepInAddress();
      share.hidden = true; // a link shown for another frame would mislead
      say("");
    }
  }

  function say(text) {
    copyStatus.textContent = text;
  }

  /** Copies a link to the frame shown (see offerLink). */
  function copyLink() {
    if (frames.length === 0) return;
    const frame = frames[at];
    offerLink(linkTo(frame), clock(frame.relative), { share, input: shareLink, status: copyStatus });
  }

  function drawStrip() {
    const wanted = Math.max(0, Math.min(at - 4, frames.length - STRIP_LENGTH));
    const inView = at >= stripStart + 2 && at < stripStart + STRIP_LENGTH - 2;
    if (stripStart < 0 || !inView || strip.children.length < Math.min(STRIP_LENGTH, frames.length)) {
      stripStart = wanted;
      strip.replaceChildren(
        ...frames.slice(stripStart, stripStart + STRIP_LENGTH).map((frame, i) => {
          const item = document.createElement("li");
          const button = document.createElement("button");
          button.type = "button";
          button.dataset.index = stripStart + i;
          const thumb = document.createElement("img");
          thumb.src = frame.url;
          thumb.alt = "";
          const label = document.createElement("span");
          label.textContent = clock(frame.relative);
          button.append(thumb, label);
          button.setAttribute("aria-label", `Show the frame at ${clock(frame.relative)}`);
          item.append(button);
          return item;
        }),
      );
    }
    for (const button of strip.querySelectorAll("button")) {
      const current = Number(button.dataset.index) === at;
      button.setAttribute("aria-current", String(current));
      if (current) {
        // Scrolls the strip only, never the page.
        const item = button.parentElement;
        strip.scrollLeft = item.offsetLeft - strip.offsetLeft - (strip.clientWidth - item.offsetWidth) / 2;
      }
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (!playing) return;
    if (audio) {
      // The audio is the clock while it has sound to give; past its end, the frames' own.
      if (audio.covers(audio.now())) {
        audio.play(Number(speed.value));
        timer = setTimeout(followAudio, FOLLOW_AUDIO_MS);
        return;
      }
      audio.pause();
    }
    if (at + 1 >= frames.length) {
      // At the end: a live stream waits for its next frame, a finished one stops.
      if (Date.now() - lastLiveFrame > LIVE_FOR_MS) pause();
      return;
    }
    const gap = Math.min(frames[at + 1].relative_ms - frames[at].relative_ms, MAX_PAUSE_MS);
    timer = setTimeout(() => {
      show(at + 1);
      schedule();
    }, gap / Number(speed.value));
  }

  /** Shows the frame the audio is at, then looks again shortly. */
  function followAudio() {
    if (!playing) return;
    if (!audio.covers(audio.now())) return schedule();
    if (audio.playing()) {
      const place = placeAt(audio.now());
      if (place !== at) show(place, true, true);
    }
    timer = setTimeout(followAudio, FOLLOW_AUDIO_MS);
  }

  function play() {
    if (at + 1 >= frames.length) show(0);
    playing = true;
    playButton.textContent = "Pause";
    schedule();
  }

  function pause() {
    playing = false;
    clearTimeout(timer);
    audio?.pause();
    playButton.textContent = "Play";
  }

  function step(by) {
    pause();
    show(at + by);
  }

  /** A frame saved while the page is open: listed, and shown if the viewer is at the end. */
  function arrive(event) {
    if (String(event.participant) !== participant || event.kind !== kind) return;
    if (!loaded) return early.push(event);
    lastLiveFrame = Date.now();
    const frame = { ...event, url: frameUrl(recording, participant, kind, event.relative_ms) };
    const atEnd = at >= frames.length - 1;
    let place = frames.length;
    while (place > 0 && frames[place - 1].relative_ms > frame.relative_ms) place--;
    if (place > 0 && frames[place - 1].relative_ms === frame.relative_ms) return;
    frames.splice(place, 0, frame);
    if (place <= at) at++;
    if (atEnd && !playing) show(frames.length - 1);
    else if (atEnd && playing) schedule();
    else show(at, false);
  }

  playButton.addEventListener("click", () => (playing ? pause() : play()));
  copyButton.addEventListener("click", copyLink);
  speed.addEventListener("change", () => {
    audio?.rate(Number(speed.value));
    schedule();
  });
  scrubber.addEventListener("input", () => {
    show(Number(scrubber.value));
    schedule();
  });
  strip.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (button) step(Number(button.dataset.index) - at);
  });
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest("input, select, textarea");
    if (typing || event.altKey || event.ctrlKey || event.metaKey) return;
    const keys = {
      ArrowLeft: () => step(-1),
      ArrowRight: () => step(1),
      Home: () => step(-frames.length),
      End: () => step(frames.length),
      " ": () => (playing ? pause() : play()),
    };
    if (event.target.closest("button") && event.key === " ") return; // the button's own click
    if (keys[event.key]) {
      event.preventDefault();
      keys[event.key]();
    }
  });

  followLive(recording, {
    frame: arrive,
    deleted(event) {
      if (event.participant === undefined || String(event.participant) === participant) {
        pause();
        showDeleted("This stream was deleted.");
      }
    },
  });
  load()
    .then(() => {
      loaded = true;
      const moment = openingMoment();
      show(moment === null ? 0 : placeAt(moment), false);
      early.forEach(arrive);
    })
    .catch((error) => {
      $("position").textContent = `Could not list the frames (${error.message})`;
    });
}

const pages = { index: indexPage, recording: recordingPage, stream: streamPage };
pages[document.body.dataset.page]?.();
