// Live progress in the admin: every element with data-status-url (the model version's change page
// panel #lk-live, the dashboard's busy rows [data-lk-live]) polls that JSON status every two seconds
// and updates its [data-k] parts in place. When something that was running finishes, the page reloads
// once to show the final figures, loss curve and map.
(function () {
  "use strict";
  const pct = (f) => `${Math.round((f || 0) * 1000) / 10}%`;
  const BUSY_JOB = ["running", "building_index"];

  function watch(panel, onFinished) {
    const $ = (k) => panel.querySelector(`[data-k="${k}"]`);
    const set = (k, text) => { const el = $(k); if (el) el.textContent = text; };
    const width = (k, f) => { const el = $(k); if (el) el.style.width = pct(f); };
    let timer = null;
    let wasBusy = false;
    let failures = 0;
    async function tick() {
      let data;
      try {
        const response = await fetch(panel.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!response.ok) throw new Error(String(response.status));
        data = await response.json();
        failures = 0;
        panel.removeAttribute("data-stale");
      } catch (e) {
        failures += 1;
        if (failures >= 3) panel.setAttribute("data-stale", "1"); // the CSS greys the bars out
        return;
      }
      set("status", data.status);
      const statusEl = $("status");
      if (statusEl && statusEl.classList.length) statusEl.className = `lk-status lk-status-${data.status}`;
      width("training_bar", data.training_fraction);
      set("training_text", `epoch ${data.epoch}/${data.epochs}` + (data.steps_per_epoch && data.status === "running" ? `, step ${data.step}/${data.steps_per_epoch}` : ""));
      const job = data.index_job;
      if (job) {
        width("index_bar", job.fraction);
        set("index_text", `job #${job.id} ${job.status}: ${job.done} embedded, ${job.failed} failed of ${job.total}`);
      }
      if (data.coverage) {
        set("coverage_text", `Coverage: ${data.coverage.embedded} of ${data.coverage.total} images have vectors` + (data.coverage.failed ? `, ${data.coverage.failed} unreadable.` : "."));
      }
      panel.dataset.status = data.status;
      panel.dataset.indexStatus = job ? job.status : "";
      const busy = ["queued", "running"].includes(data.status) || (job && BUSY_JOB.includes(job.status));
      if (busy) { wasBusy = true; return; }
      if (timer) { clearInterval(timer); timer = null; }
      if (wasBusy) onFinished();
    }
    timer = setInterval(tick, 2000);
    tick();
  }

  let reloading = false;
  function reload() {
    if (reloading) return;
    reloading = true;
    setTimeout(() => location.reload(), 500);
  }
  function start() {
    document.querySelectorAll("#lk-live[data-status-url], [data-lk-live][data-status-url]").forEach((panel) => watch(panel, reload));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
