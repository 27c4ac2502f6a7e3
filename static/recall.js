// The recording page's "After the call" section: places each bar on the shared timeline
// from its data attributes (the page's policy allows no inline styles), and plays a file
// from its bar.
"use strict";

(function () {
  const section = document.getElementById("recall-media");
  if (!section) return;
  for (const bar of section.querySelectorAll(".recall-bar")) {
    bar.style.left = bar.dataset.left + "%";
    // A part too short to see still gets a sliver.
    bar.style.width = "max(" + bar.dataset.width + "%, 4px)";
  }
  for (const bar of section.querySelectorAll(".recall-bar.part")) {
    bar.addEventListener("click", () => {
      const row = bar.closest(".recall-row");
      const figure = row && row.querySelector('.recall-part[data-file="' + bar.dataset.file + '"]');
      const player = figure && figure.querySelector(".recall-player");
      if (!player) return;
      for (const other of section.querySelectorAll(".recall-player")) {
        if (other !== player) other.pause();
      }
      player.currentTime = 0;
      player.scrollIntoView({ block: "nearest" });
      player.play().catch(() => {});
    });
  }
})();
