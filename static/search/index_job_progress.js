// Index job progress bars in the admin: poll each unfinished job's status URL until it finishes.
(function () {
  "use strict";
  function poll(el) {
    fetch(el.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (s) {
        el.querySelector("progress").value = s.percent;
        el.querySelector(".index-job-progress-text").textContent =
          (s.done + s.failed).toLocaleString() + " of " + s.total.toLocaleString() +
          " (" + s.failed.toLocaleString() + " failed) · " + s.status_display + (s.error ? ": " + s.error : "");
        if (!s.finished) { setTimeout(function () { poll(el); }, 2000); }
      })
      .catch(function () { setTimeout(function () { poll(el); }, 10000); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".index-job-progress[data-finished='0']").forEach(poll);
  });
})();
