// "Export MP4" buttons (data-export: the exports URL; data-spec: what to export, as JSON,
// or data-stream: "<participant>/<type>"):
// starts the export, shows its progress live, then a link to the MP4. An export already
// made is answered at once.
'use strict';

function exportProgress(job) {
  if (job.status === 'queued') return 'Waiting for a free encoder…';
  const eta = job.eta_seconds == null ? '' : `, about ${Math.ceil(job.eta_seconds)} s left`;
  return `Exporting: ${job.percent}% (${job.frames_done} of ${job.frames} frames${eta})`;
}

function exportSpec(stream) {
  const [participant, kind] = stream.split('/');
  return JSON.stringify({participant: Number(participant), stream: kind});
}

async function runExport(button) {
  const status = button.parentElement.querySelector('.export-status');
  button.disabled = true;
  status.textContent = 'Starting the export…';
  try {
    let response = await fetch(button.dataset.export, {
      method: 'POST',
      headers: {'content-type': 'application/json'},
      body: button.dataset.spec || exportSpec(button.dataset.stream),
    });
    let job = await response.json();
    if (!response.ok) throw new Error(job.error || response.statusText);
    while (job.status === 'queued' || job.status === 'running') {
      status.textContent = exportProgress(job);
      await new Promise((resolve) => setTimeout(resolve, 500));
      response = await fetch(job.url);
      job = await response.json();
      if (!response.ok) throw new Error(job.error || response.statusText);
    }
    if (job.status !== 'done') throw new Error(job.error || job.status);
    const link = document.createElement('a');
    link.href = job.download_url;
    link.download = '';
    link.textContent = `Download MP4 (${(job.bytes / 1e6).toFixed(1)} MB, ${job.frames} frames)`;
    status.replaceChildren(link);
  } catch (error) {
    status.textContent = `Export failed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-export]');
  if (button) runExport(button);
});

// Animated previews are made by ffmpeg when asked for: only once their section is opened.
document.addEventListener('toggle', (event) => {
  const details = event.target;
  if (!(details instanceof HTMLDetailsElement) || !details.open) return;
  for (const figure of details.querySelectorAll('figure[data-preview]')) {
    if (figure.querySelector('img')) continue;
    const image = document.createElement('img');
    image.src = figure.dataset.preview;
    image.alt = figure.dataset.alt;
    figure.prepend(image);
  }
}, true);
