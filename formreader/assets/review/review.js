// formreader review page: keyboard review of field values, progress, CSV export.
// Values are read from data-* attributes and written only through .value / .textContent:
// nothing from the results is ever parsed as HTML here.
(() => {
  "use strict";
  const items = Array.from(document.querySelectorAll("section.item"));
  const inputs = items.map((s) => s.querySelector("input.value"));
  const exportButton = document.getElementById("export");
  const progress = document.getElementById("progress");
  const meter = document.getElementById("meter");
  const storeKey = "formreader-review:" + document.body.dataset.doc;
  const LABEL = { pending: "to review", accepted: "accepted", corrected: "corrected" };
  let status = items.map(() => "pending");

  // ---- state (kept across reloads in localStorage when the browser allows it for file:// pages)
  function save() {
    try {
      const data = {};
      items.forEach((s, i) => { if (status[i] !== "pending") data[i] = { status: status[i], value: inputs[i].value }; });
      localStorage.setItem(storeKey, JSON.stringify(data));
    } catch (e) { /* storage disabled: the page still works, state lives until reload */ }
  }
  function restore() {
    let data = null;
    try { data = JSON.parse(localStorage.getItem(storeKey) || "null"); } catch (e) { data = null; }
    if (!data) return;
    for (const [key, saved] of Object.entries(data)) {
      const i = Number(key);
      if (!(i >= 0 && i < items.length) || !LABEL[saved.status]) continue;
      inputs[i].value = String(saved.value);
      status[i] = saved.status;
    }
  }

  function show(i) {
    const s = items[i];
    s.classList.toggle("accepted", status[i] === "accepted");
    s.classList.toggle("corrected", status[i] === "corrected");
    s.querySelector(".state").textContent = LABEL[status[i]];
  }
  function updateProgress() {
    const done = status.filter((x) => x !== "pending").length;
    const corrected = status.filter((x) => x === "corrected").length;
    progress.textContent = `${done} / ${items.length} reviewed · ${corrected} corrected`;
    meter.style.width = items.length ? `${(100 * done) / items.length}%` : "100%";
    document.body.classList.toggle("complete", items.length > 0 && done === items.length);
  }
  function set(i, st) {
    status[i] = st;
    show(i);
    updateProgress();
    save();
  }

  // Enter accepts what the input holds: unchanged = confirmed, changed = corrected.
  function commit(i) {
    set(i, inputs[i].value === items[i].dataset.original ? "accepted" : "corrected");
  }
  function go(i) {
    if (i >= 0 && i < items.length) { inputs[i].focus(); return; }
    if (i >= items.length) {
      const next = status.indexOf("pending");
      (next >= 0 ? inputs[next] : exportButton).focus();
    }
  }
  function pick(i, n) {
    const alt = items[i].querySelectorAll("button.alt")[n];
    if (!alt) return;
    inputs[i].value = alt.dataset.value;
    commit(i);
    go(i + 1);
  }

  items.forEach((section, i) => {
    const input = inputs[i];
    input.addEventListener("focus", () => {
      items.forEach((s) => s.classList.remove("current"));
      section.classList.add("current");
      section.scrollIntoView({ block: "center" });
      input.select(); // typing replaces the value
    });
    input.addEventListener("input", () => {
      // Typing corrects: a changed value counts even if the reviewer moves on without Enter.
      if (input.value !== section.dataset.original) set(i, "corrected");
      else if (status[i] === "corrected") set(i, "pending");
    });
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") { ev.preventDefault(); commit(i); go(i + 1); }
      else if (ev.key === "ArrowDown") { ev.preventDefault(); go(i + 1); }
      else if (ev.key === "ArrowUp") { ev.preventDefault(); go(i - 1); }
      else if (ev.key === "Escape") { ev.preventDefault(); input.value = section.dataset.original; set(i, "pending"); input.select(); }
      else if (ev.altKey && /^[1-9]$/.test(ev.key)) { ev.preventDefault(); pick(i, Number(ev.key) - 1); }
    });
    section.querySelectorAll("button.alt").forEach((button, n) => {
      button.addEventListener("click", () => pick(i, n));
    });
    section.querySelector(".body").addEventListener("click", (ev) => {
      if (ev.target.tagName === "IMG") input.focus();
    });
  });

  // ---- export: RFC 4180 CSV built as bytes, so a file name that is not UTF-8 keeps its own bytes
  const encoder = new TextEncoder();
  const COMMA = 0x2c, QUOTE = 0x22, CR = 0x0d, LF = 0x0a;
  function cell(bytes) {
    if (!bytes.some((b) => b === QUOTE || b === COMMA || b === CR || b === LF)) return bytes;
    const out = [QUOTE];
    for (const b of bytes) { out.push(b); if (b === QUOTE) out.push(QUOTE); }
    out.push(QUOTE);
    return Uint8Array.from(out);
  }
  function fileBytes(section) {
    const bin = atob(section.dataset.fileBytes);
    return Uint8Array.from(bin, (c) => c.charCodeAt(0));
  }
  function correctionsCsv() {
    const parts = [encoder.encode("file,page,field,value\r\n")];
    items.forEach((s, i) => {
      if (status[i] === "pending") return;
      parts.push(cell(fileBytes(s)), encoder.encode(","), encoder.encode(s.dataset.page), encoder.encode(","),
        cell(encoder.encode(s.dataset.field)), encoder.encode(","), cell(encoder.encode(inputs[i].value)), encoder.encode("\r\n"));
    });
    return new Blob(parts, { type: "text/csv" });
  }
  function exportCsv() {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(correctionsCsv());
    link.download = "corrections.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }
  exportButton.addEventListener("click", exportCsv);
  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "s") { ev.preventDefault(); exportCsv(); }
  });

  restore();
  items.forEach((_, i) => show(i));
  updateProgress();
  go(Math.max(status.indexOf("pending"), 0));
})();
