// The crop box on the photo-search page: after a photo is chosen (or dropped), it is shown with a box
// the shopper drags and resizes with a mouse, a finger or a pen (pointer events) or the keyboard
// (arrow keys move, Shift + arrow keys resize). The box is kept in pixels of the photo as the browser
// shows it (EXIF orientation applied, as the server applies it) and written to the hidden "crop"
// field: empty until the box is touched (the server finds the item itself), "none" for the whole
// photo, else x,y,w,h. Without JavaScript the field stays empty.
//
// With results, the page carries the photo and the boxes found in it ([data-proposals]): the photo
// goes back into the file input, each box searches again with it at a click or tap, and "Adjust the
// box" opens the crop box on the photo, starting from the box the results are for.
(function () {
  "use strict";

  function setup(form) {
    const root = form.querySelector("[data-cropper]");
    const input = form.querySelector("input[type=file]");
    const field = form.querySelector("input[name=crop]");
    if (!root || !input || !field) return;
    const stage = root.querySelector("[data-crop-stage]");
    const img = root.querySelector("[data-crop-image]");
    const box = root.querySelector("[data-crop-box]");
    const text = root.querySelector("[data-crop-text]");
    let W = 0, H = 0;            // the photo's size in its own pixels
    let crop = null;             // {x, y, w, h} in those pixels
    let auto = true;             // untouched: the server finds the item
    let url = null;

    function minSide() { return Math.max(1, Math.min(8, W, H)); }

    function clamp(c) {
      const m = minSide();
      let w = Math.round(Math.min(Math.max(c.w, m), W));
      let h = Math.round(Math.min(Math.max(c.h, m), H));
      let x = Math.round(Math.min(Math.max(c.x, 0), W - w));
      let y = Math.round(Math.min(Math.max(c.y, 0), H - h));
      return {x: x, y: y, w: w, h: h};
    }

    function render() {
      const sx = img.clientWidth / W, sy = img.clientHeight / H;
      box.style.left = crop.x * sx + "px";
      box.style.top = crop.y * sy + "px";
      box.style.width = crop.w * sx + "px";
      box.style.height = crop.h * sy + "px";
      const whole = crop.x === 0 && crop.y === 0 && crop.w === W && crop.h === H;
      field.value = auto ? "" : whole ? "none" : [crop.x, crop.y, crop.w, crop.h].join(",");
      text.textContent = auto ? "Lookalike will find the item in the photo (" + W + "×" + H + ")" :
        whole ? "Whole photo (" + W + "×" + H + ")" :
        "Searching the boxed part: " + crop.w + "×" + crop.h + " at " + crop.x + ", " + crop.y;
      box.setAttribute("aria-valuetext", text.textContent);
    }

    // start: the box to begin from ({x, y, w, h}); without one, the whole photo and the server's choice.
    function show(file, start, done) {
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(file);
      img.onload = function () {
        W = img.naturalWidth; H = img.naturalHeight;
        img.classList.toggle("pixelated", Math.max(W, H) <= 64);
        if (Math.max(W, H) <= 64) img.style.width = Math.max(W, H) < 32 ? "256px" : "320px";
        else img.style.width = "";
        root.hidden = false;
        auto = !start;
        crop = start ? clamp(start) : {x: 0, y: 0, w: W, h: H};
        render();
        if (done) done();
      };
      img.src = url;
    }

    input.addEventListener("change", function () { if (input.files.length) show(input.files[0]); });
    form.addEventListener("drop", function (e) {
      const files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length && /^image\//.test(files[0].type)) show(files[0]);
    });
    root.querySelector("[data-crop-reset]").addEventListener("click", function () {
      auto = false; crop = {x: 0, y: 0, w: W, h: H}; render(); box.focus();
    });
    window.addEventListener("resize", function () { if (crop) render(); });

    // Pointer: drag the box to move it, a corner handle to resize from that corner.
    let drag = null;
    box.addEventListener("pointerdown", function (e) {
      if (!crop || e.button > 0) return;
      e.preventDefault();
      box.focus();
      box.setPointerCapture(e.pointerId);
      drag = {mode: e.target.dataset.handle || "move", x0: e.clientX, y0: e.clientY, start: Object.assign({}, crop), id: e.pointerId};
      auto = false;
    });
    box.addEventListener("pointermove", function (e) {
      if (!drag || e.pointerId !== drag.id) return;
      const dx = (e.clientX - drag.x0) * W / img.clientWidth;
      const dy = (e.clientY - drag.y0) * H / img.clientHeight;
      const s = drag.start, m = minSide();
      if (drag.mode === "move") { crop = clamp({x: s.x + dx, y: s.y + dy, w: s.w, h: s.h}); render(); return; }
      let left = s.x, top = s.y, right = s.x + s.w, bottom = s.y + s.h;
      if (drag.mode.includes("w")) left = Math.min(Math.max(0, s.x + dx), right - m);
      if (drag.mode.includes("e")) right = Math.max(Math.min(W, right + dx), left + m);
      if (drag.mode.includes("n")) top = Math.min(Math.max(0, s.y + dy), bottom - m);
      if (drag.mode.includes("s")) bottom = Math.max(Math.min(H, bottom + dy), top + m);
      crop = clamp({x: left, y: top, w: right - left, h: bottom - top});
      render();
    });
    function end(e) { if (drag && e.pointerId === drag.id) drag = null; }
    box.addEventListener("pointerup", end);
    box.addEventListener("pointercancel", end);

    // Keyboard: a step is 1/32 of the photo's side (at least one pixel).
    box.addEventListener("keydown", function (e) {
      if (!crop) return;
      const keys = {ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
      const d = keys[e.key];
      if (!d) return;
      e.preventDefault();
      auto = false;
      const sx = Math.max(1, Math.round(W / 32)), sy = Math.max(1, Math.round(H / 32));
      if (e.shiftKey) crop = clamp({x: crop.x, y: crop.y, w: crop.w + d[0] * sx, h: crop.h + d[1] * sy});
      else crop = clamp({x: crop.x + d[0] * sx, y: crop.y + d[1] * sy, w: crop.w, h: crop.h});
      render();
    });

    const proposals = document.querySelector("[data-proposals]");
    if (proposals) carry(form, proposals, input, field, show, root, box);
  }

  // A data: URI as a File, to put back into the file input.
  function dataFile(uri, name) {
    const comma = uri.indexOf(",");
    const type = uri.slice(5, uri.indexOf(";"));
    const bytes = atob(uri.slice(comma + 1));
    const buffer = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) buffer[i] = bytes.charCodeAt(i);
    return new File([buffer], name + "." + type.split("/")[1], {type: type});
  }

  function parseBox(text) {
    const v = (text || "").split(",").map(Number);
    return v.length === 4 && v.every(function (n) { return n >= 0; }) ? {x: v[0], y: v[1], w: v[2], h: v[3]} : null;
  }

  function carry(form, proposals, input, field, show, root, box) {
    const photo = proposals.querySelector("[data-proposals-image]");
    const W0 = Number(proposals.dataset.width), H0 = Number(proposals.dataset.height);
    const again = proposals.dataset.cropAgain;
    let file = null;

    // Boxes come in pixels of the photo as uploaded; the page may carry a smaller copy of a large one.
    function scaled(b) {
      const kx = photo.naturalWidth / W0, ky = photo.naturalHeight / H0;
      if (kx === 1 && ky === 1) return b;
      const x = Math.floor(b.x * kx), y = Math.floor(b.y * ky);
      return {x: x, y: y, w: Math.max(1, Math.ceil((b.x + b.w) * kx) - x), h: Math.max(1, Math.ceil((b.y + b.h) * ky) - y)};
    }
    function asField(b) { b = scaled(b); return [b.x, b.y, b.w, b.h].join(","); }
    function searchWith(value) {
      field.value = value;
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
    }
    // The region the results are for, to start the crop box from.
    function current() {
      const drawn = parseBox(again);
      if (drawn) return drawn;
      const chosen = proposals.querySelector('[data-box][aria-pressed="true"]');
      return chosen ? parseBox(chosen.dataset.box) : null;
    }

    function ready() {
      file = dataFile(photo.src, "photo");
      const transfer = new DataTransfer();
      transfer.items.add(file);
      input.files = transfer.files;
      const drawn = parseBox(again);
      field.value = drawn ? asField(drawn) : again;
    }
    if (photo.complete && photo.naturalWidth) ready(); else photo.addEventListener("load", ready);
    // Another photo chosen or dropped: these boxes are not on it.
    function stale() { file = null; proposals.hidden = true; }
    input.addEventListener("change", stale);
    form.addEventListener("drop", function (e) {
      const files = e.dataTransfer && e.dataTransfer.files;
      if (files && files.length) stale();
    });

    proposals.querySelectorAll("[data-box]").forEach(function (button) {
      button.addEventListener("click", function () {
        if (!file || button.getAttribute("aria-pressed") === "true") return;
        proposals.querySelectorAll("[data-box]").forEach(function (b) { b.setAttribute("aria-pressed", b === button ? "true" : "false"); });
        searchWith(asField(parseBox(button.dataset.box)));
      });
    });
    const adjust = proposals.querySelector("[data-box-adjust]");
    if (adjust) adjust.addEventListener("click", function () {
      if (!file) return;
      const start = current();
      show(file, start ? scaled(start) : {x: 0, y: 0, w: photo.naturalWidth, h: photo.naturalHeight}, function () {
        root.scrollIntoView({block: "nearest"});
        box.focus();
      });
    });
    const whole = proposals.querySelector("[data-box-whole]");
    if (whole) whole.addEventListener("click", function () { if (file) searchWith("none"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.photo-search").forEach(setup);
  });
})();
