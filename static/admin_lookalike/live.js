// Polls the model version's status while training or indexing runs, and updates the panel in place.
(function () {
  const panel = document.getElementById("lk-live");
  if (!panel) return;
  const $ = (k) => panel.querySelector(`[data-k="${k}"]`);
  const pct = (f) => `${Math.round((f || 0) * 1000) / 10}%`;
  let timer = null;
  let wasBusy = false;
  async function tick() {
    let data;
    try {
      const response = await fetch(panel.dataset.statusUrl, { credentials: "same-origin" });
      if (!response.ok) return;
      data = await response.json();
    } catch (e) { return; }
    $("status").textContent = data.status;
    $("training_bar").style.width = pct(data.training_fraction);
    $("training_text").textContent = `epoch ${data.epoch}/${data.epochs}` + (data.steps_per_epoch ? `, step ${data.step}/${data.steps_per_epoch}` : "");
    const job = data.index_job;
    if (job) {
      $("index_bar").style.width = pct(job.fraction);
      $("index_text").textContent = `job #${job.id} ${job.status}: ${job.done} embedded, ${job.failed} failed of ${job.total}`;
    }
    if (data.coverage) {
      $("coverage_text").textContent = `Coverage: ${data.coverage.embedded} of ${data.coverage.total} images have vectors` + (data.coverage.failed ? `, ${data.coverage.failed} unreadable.` : ".");
    }
    const busy = ["queued", "running"].includes(data.status) || (job && ["queued", "running", "building_index"].includes(job.status));
    if (busy) { wasBusy = true; return; }
    if (timer) { clearInterval(timer); timer = null; }
    if (wasBusy) setTimeout(() => location.reload(), 500); // show the final figures and loss curve
  }
  timer = setInterval(tick, 2000);
  tick();
})();
