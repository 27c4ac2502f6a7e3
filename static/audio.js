// recall-frames audio in the browser: the level bars on the participant cards, and the
// track the frame player plays in step with the frames. Loaded before app.js, which calls it.
"use strict";

// ---- level bars ----

/** Bars a level summary is asked for: about one per two pixels of the bar. */
const LEVEL_BUCKETS_PER_PIXEL = 0.5;
/** Quieter than this (in dB of full scale) draws as nothing. */
const LEVEL_FLOOR_DB = -50;

/** A level (RMS, 0 to 1 of full scale) as a bar height from 0 to 1, on a decibel scale. */
function levelHeight(level) {
  if (!(level > 0)) return 0;
  const db = 20 * Math.log10(level);
  return Math.max(0, Math.min(1, 1 - db / LEVEL_FLOOR_DB));
}

/**
 * Draws a card's audio bar: the track's levels from the server as an SVG, one rectangle a
 * bucket; clicking the bar plays the card's audio from there.
 */
async function drawAudioBar(tile) {
  const bar = tile.querySelector(".audio-bar");
  const player = tile.querySelector("audio");
  if (!bar || bar.dataset.drawn) return;
  bar.dataset.drawn = "pending";
  const buckets = Math.max(20, Math.min(1000, Math.round(bar.clientWidth * LEVEL_BUCKETS_PER_PIXEL)));
  const response = await fetch(`${tile.dataset.levelsUrl}?buckets=${buckets}`);
  if (!response.ok) {
    bar.dataset.drawn = "failed";
    bar.title = `The audio's levels could not be read (${response.status})`;
    return;
  }
  const { levels, duration } = await response.json();
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${levels.length} 100`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  levels.forEach((level, i) => {
    const height = levelHeight(level) * 100;
    if (height <= 0) return;
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", i);
    rect.setAttribute("y", 50 - height / 2);
    rect.setAttribute("width", 0.8);
    rect.setAttribute("height", Math.max(height, 1));
    rect.dataset.level = level;
    svg.append(rect);
  });
  bar.replaceChildren(svg);
  bar.dataset.drawn = "done";
  bar.addEventListener("click", (event) => {
    const box = bar.getBoundingClientRect();
    const share = Math.max(0, Math.min(1, (event.clientX - box.left) / box.width));
    player.currentTime = share * duration;
    player.play().catch(() => {});
  });
}

/** Draws every audio bar on the page not drawn yet (after a live refresh too). */
function drawAudioBars() {
  for (const tile of document.querySelectorAll(".audio-tile")) drawAudioBar(tile);
}

// ---- the player's audio ----

/**
 * The participant's track as the frame player drives it: it plays from a frame's time at
 * the player's speed, and while it plays it is the clock the frames follow (see app.js).
 * Times are milliseconds from the recording's start, as the frames have them.
 */
function playerAudio(audio, status) {
  let failed = false;
  const say = (text, state) => {
    status.textContent = text;
    status.dataset.state = state;
  };
  audio.addEventListener("ended", () => say("The audio ends here", "ended"));
  audio.addEventListener("error", () => {
    failed = true;
    say("The audio could not be played", "failed");
  });

  /** The track's length: what the server said, or more once the browser has read it (a growing track). */
  function durationMs() {
    const known = Number(audio.dataset.duration) * 1000;
    return Number.isFinite(audio.duration) ? Math.max(known, audio.duration * 1000) : known;
  }

  return {
    /** Whether the track still has sound to give at `ms`. */
    covers(ms) {
      return !failed && ms < durationMs() - 20;
    },
    /** Where the track is now. */
    now() {
      return audio.currentTime * 1000;
    },
    /** Whether it is playing (not paused, not at its end). */
    playing() {
      return !audio.paused && !audio.ended;
    },
    /** Moves to `ms`, unless it is there already (a seek makes the browser fetch again). */
    seek(ms) {
      if (failed) return;
      const target = Math.min(ms, durationMs()) / 1000;
      if (Math.abs(audio.currentTime - target) > 0.001) audio.currentTime = target;
    },
    /** Plays from where it is, at `rate`. */
    play(rate) {
      if (failed) return;
      audio.playbackRate = rate;
      if (!audio.paused) return;
      audio.play().then(
        () => say("Audio playing with the frames", "playing"),
        (error) => {
          // A browser that wants a gesture first; the frames go on regardless.
          if (error.name === "NotAllowedError") say("Press Play to hear the audio", "blocked");
          else if (error.name !== "AbortError") say("The audio could not be played", "failed");
        },
      );
    },
    pause() {
      if (audio.paused) return;
      audio.pause();
      if (!failed) say("Audio paused with the frames", "paused");
    },
    rate(rate) {
      audio.playbackRate = rate;
    },
  };
}
