// Progressive enhancement for the photo-search forms: drop a photo on the form, preview it, show
// a "Searching…" state. Without JS the forms are plain multipart forms with a file input and a button.
document.documentElement.classList.replace("no-js", "js");

(function () {
  "use strict";
  const ACCEPT = /^image\/(jpeg|png|webp|gif)$/;

  function hasFiles(event) {
    return Array.from((event.dataTransfer && event.dataTransfer.types) || []).includes("Files");
  }

  function setBusy(form) {
    form.classList.add("is-busy");
    form.setAttribute("aria-busy", "true");
    form.querySelectorAll("button[type=submit]").forEach(function (b) {
      b.disabled = true;
      b.dataset.label = b.textContent;
      b.textContent = "Searching…";
    });
    const status = form.querySelector("[data-status]");
    if (status) status.textContent = "Searching for similar items…";
  }

  function showError(form, message) {
    const status = form.querySelector("[data-status]");
    if (status) { status.textContent = message; status.classList.add("is-error"); }
    else { window.alert(message); }
  }

  function preview(form, file) {
    const img = form.querySelector("[data-preview]");
    if (!img || !file) return;
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    img.dataset.url = URL.createObjectURL(file);
    img.onload = function () { img.classList.toggle("pixelated", Math.max(img.naturalWidth, img.naturalHeight) <= 64); };
    img.src = img.dataset.url;
    img.alt = "Preview of " + file.name;
    img.hidden = false;
    form.classList.add("has-file");
    const name = form.querySelector("[data-filename]");
    if (name) name.textContent = file.name;
  }

  function accept(form, input, files) {
    const file = files && files[0];
    if (!file) return false;
    if (!ACCEPT.test(file.type)) {
      showError(form, "“" + file.name + "” is not a JPEG, PNG, WebP or GIF photo.");
      return false;
    }
    const status = form.querySelector("[data-status]");
    if (status) { status.textContent = ""; status.classList.remove("is-error"); }
    preview(form, file);
    return true;
  }

  function enhance(form) {
    const input = form.querySelector("input[type=file]");
    if (!input) return;
    const auto = form.hasAttribute("data-autosubmit");
    function submit() { setBusy(form); form.submit(); }

    input.addEventListener("change", function () {
      if (accept(form, input, input.files) && auto) submit();
    });
    let depth = 0;
    form.addEventListener("dragenter", function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault(); depth += 1; form.classList.add("is-dragover");
    });
    form.addEventListener("dragover", function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault(); e.dataTransfer.dropEffect = "copy";
    });
    form.addEventListener("dragleave", function () {
      depth = Math.max(0, depth - 1);
      if (!depth) form.classList.remove("is-dragover");
    });
    form.addEventListener("drop", function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault(); depth = 0; form.classList.remove("is-dragover");
      if (!accept(form, input, e.dataTransfer.files)) return;
      input.files = e.dataTransfer.files;
      if (auto) submit();
    });
    form.addEventListener("submit", function (e) {
      if (!input.files.length) {
        e.preventDefault();
        showError(form, "Choose or drop a photo first.");
        input.focus();
        return;
      }
      setBusy(form);
    });
  }

  // Dropping a file anywhere else would navigate away from the page to the file itself.
  window.addEventListener("dragover", function (e) { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener("drop", function (e) { if (hasFiles(e)) e.preventDefault(); });
  // Coming back with the Back button must not leave a form stuck in its busy state.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form.is-busy").forEach(function (form) {
      form.classList.remove("is-busy"); form.removeAttribute("aria-busy");
      form.querySelectorAll("button[type=submit]").forEach(function (b) {
        b.disabled = false; if (b.dataset.label) b.textContent = b.dataset.label;
      });
    });
  });
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-photo-drop]").forEach(enhance);
  });
})();
