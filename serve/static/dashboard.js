(function () {
  "use strict";

  const KEY_STORE = "synth2.apiKey";
  const REFRESH_MS = 2000;
  const LOG_TAIL = 200;
  const ACTIVE = new Set(["PENDING", "RUNNING"]);
  const STATUS_ORDER = ["RUNNING", "PENDING", "SUCCEEDED", "FAILED", "STOPPED"];
  // How much of a job each stage is (roughly, by time); stages a job has not reached yet count as 0.
  const WEIGHTS = { caption: 30, score: 10, select: 5, synthesize: 45, shard: 10, embed: 100 };
  const PLANS = { synthesize: ["caption", "score", "select", "synthesize", "shard"], embed: ["embed"] };

  const $ = (sel, root) => (root || document).querySelector(sel);
  const state = {
    key: null, authFailed: false, timer: null, busy: false, mine: false,
    rows: new Map(),          // job id -> row record
    jobs: [],                 // the last list, in the service's order
    open: new Set(),          // job ids whose shards row is open
    logsFor: null,            // job id shown in the logs panel
    focus: null,              // job id from #job=ID
    report: null,             // {name, html} shown in the dialog
    consumers: null,          // names of the registered consumers
    runFiles: new Map(),      // consumer run id -> its files, once listed
  };

  // ---------------------------------------------------------------- small helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c);
    return el;
  }

  function fill(el, ...children) { el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)); }
  function plural(n, word) { return fmtCount(n) + " " + word + (n === 1 ? "" : "s"); }
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }
  function setAttr(el, name, value) { if (el.getAttribute(name) !== String(value)) el.setAttribute(name, value); }

  function fmtDuration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "\u2014";
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return m + " m " + String(sec).padStart(2, "0") + " s";
    return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " m";
  }

  function fmtAgo(iso) {
    if (!iso) return "";
    const s = (Date.now() - Date.parse(iso)) / 1000;
    if (!isFinite(s)) return "";
    if (s < 45) return "just now";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return new Date(iso).toLocaleDateString();
  }

  function fmtBytes(n) {
    if (!isFinite(n)) return "";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(n < 10 ? 1 : 0) : n) + " " + units[i];
  }

  function fmtRate(r) {
    if (!isFinite(r) || r <= 0) return "";
    return (r >= 100 ? Math.round(r) : r >= 10 ? r.toFixed(1) : r.toFixed(2)) + "/s";
  }

  function fmtShort(n) {
    if (n === null || n === undefined) return "\u2013";
    if (n < 10000) return String(n);
    if (n < 1e6) return (n / 1e3).toFixed(n < 1e5 ? 1 : 0).replace(/\.0$/, "") + "k";
    return (n / 1e6).toFixed(n < 1e7 ? 2 : 1).replace(/\.?0+$/, "") + "M";
  }

  function fmtCount(n) { return n === null || n === undefined ? "\u2013" : Number(n).toLocaleString("en-US"); }

  function localTime(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

  let toastTimer = null;
  function toast(message, kind) {
    const t = $("#toast");
    t.textContent = message;
    t.dataset.kind = kind || "info";
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
  }

  // ---------------------------------------------------------------- the key

  function loadKey() {
    try { return sessionStorage.getItem(KEY_STORE); } catch (e) { return null; }
  }

  function setKey(key) {
    state.key = key || null;
    state.authFailed = false;
    try {
      if (state.key) sessionStorage.setItem(KEY_STORE, state.key); else sessionStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage disabled: the key lives in this page only */ }
    $("#api-key").value = state.key || "";
    $("#auth-error").hidden = true;
  }

  // `#key=...` (stored, then removed from the address bar) and `#job=ID` (open that job).
  function readFragment() {
    const raw = location.hash.replace(/^#/, "");
    if (!raw) return;
    const params = new URLSearchParams(raw);
    if (params.has("key")) {
      const key = params.get("key");
      params.delete("key");
      if (key) setKey(key.trim());
      const rest = params.toString();
      history.replaceState(history.state, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
    const job = params.get("job");
    if (job) { state.focus = job; state.open.add(job); state.logsFor = job; }
  }

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, detail) {
      super(Array.isArray(detail) ? detail.join("; ") : String(detail));
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(path, options) {
    if (!state.key) throw new ApiError(401, "invalid or missing API key");
    const opts = Object.assign({ cache: "no-store" }, options || {});
    opts.headers = Object.assign({ Authorization: "Bearer " + state.key }, opts.headers || {});
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      if (e instanceof TypeError && /header/i.test(e.message)) { authFailed(); throw new ApiError(401, "invalid or missing API key"); }
      throw new ApiError(0, "cannot reach the service");
    }
    if (res.status === 401) { authFailed(); throw new ApiError(401, "invalid or missing API key"); }
    return res;
  }

  async function detailOf(res) {
    try {
      const body = await res.json();
      return body && body.detail !== undefined ? body.detail : res.statusText;
    } catch (e) {
      return res.status + " " + res.statusText;
    }
  }

  async function apiJson(path, options) {
    const res = await api(path, options);
    if (!res.ok) throw new ApiError(res.status, await detailOf(res));
    return res.json();
  }

  function authFailed() {
    state.authFailed = true;
    $("#auth-error").hidden = false;
    setConn("error", "invalid or missing API key");
  }

  function setConn(kind, text) {
    setAttr($("#conn"), "data-state", kind);
    setText($("#conn-text"), text);
  }

  // ---------------------------------------------------------------- progress

  function stagePlan(progress) {
    const names = Object.keys(progress || {});
    // A consumer run (or another kind) has stages of its own: show only those.
    const base = names.includes("embed") ? PLANS.embed
      : (!names.length || names.some((n) => PLANS.synthesize.includes(n))) ? PLANS.synthesize : [];
    return base.concat(names.filter((n) => !base.includes(n)));
  }

  function stageFraction(st) {
    if (!st) return 0;
    if (st.status === "SUCCEEDED") return 1;
    if (!st.total) return 0;
    return Math.max(0, Math.min(1, st.done / st.total));
  }

  function overallPercent(job) {
    if (job.status === "SUCCEEDED") return 100;
    const p = job.progress || {};
    let num = 0, den = 0;
    for (const name of stagePlan(p)) {
      const w = WEIGHTS[name] !== undefined ? WEIGHTS[name] : 10;
      den += w;
      num += w * stageFraction(p[name]);
    }
    const pct = den ? Math.floor((100 * num) / den) : 0;
    return Math.min(pct, 99); // 100 % only once the job has SUCCEEDED
  }

  function currentActivity(job) {
    const p = job.progress || {};
    if (job.status === "PENDING") return "waiting for a free slot";
    if (job.status === "RUNNING") {
      const names = stagePlan(p);
      const running = names.filter((n) => p[n] && p[n].status === "RUNNING");
      if (!Object.keys(p).length) return "starting: loading models\u2026";
      if (running.length) {
        const st = p[running[0]];
        const bits = [running.join(" + ")];
        if (fmtRate(st.rate_per_s)) bits.push(fmtRate(st.rate_per_s));
        if (st.rate_per_s > 0 && (st.total - st.done) / st.rate_per_s >= 2) bits.push("~" + fmtDuration((st.total - st.done) / st.rate_per_s).replace(/\.\d s$/, " s") + " left in this stage");
        return bits.join(" \u00b7 ");
      }
      if (names.every((n) => p[n] && p[n].status === "SUCCEEDED")) return "finishing\u2026";
      return "working\u2026";
    }
    const shard = p.shard || {};
    if (job.status === "SUCCEEDED") {
      return shard.shards !== undefined ? fmtCount(shard.done) + " samples in " + shard.shards + " shard" + (shard.shards === 1 ? "" : "s") : "done";
    }
    return "";
  }

  // ---------------------------------------------------------------- rows

  function createRow(job) {
    const id = job.id;
    const r = { id: id, job: job };
    r.name = h("div", { class: "job-name" });
    r.idLink = h("a", { class: "job-id", href: "#job=" + encodeURIComponent(id), title: "open this job's shards and logs", text: id,
      onclick: (ev) => { ev.preventDefault(); focusJob(id); } });
    r.created = h("span", { class: "created" });
    r.badge = h("span", { class: "status" });
    r.note = h("div", { class: "note" });
    r.attempts = h("div", { class: "attempts" });
    r.fill = h("div", { class: "fill" });
    r.bar = h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": 0,
      "aria-label": "overall progress of job " + id }, r.fill);
    r.pct = h("span", { class: "pct" });
    r.now = h("div", { class: "now" });
    r.stages = h("div", { class: "stages", "aria-label": "progress per stage" });
    r.elapsed = h("span", { class: "elapsed-main" });
    r.elapsedNote = h("small");
    r.reportBtn = h("button", { type: "button", class: "btn sm", "data-action": "report", onclick: () => openReport(r.job) }, "Report");
    r.shardsBtn = h("button", { type: "button", class: "btn sm", "data-action": "shards", "aria-expanded": "false",
      "aria-controls": "details-" + id, onclick: () => toggleShards(id) }, "Shards");
    r.logsBtn = h("button", { type: "button", class: "btn sm", "data-action": "logs", "aria-pressed": "false",
      onclick: () => showLogs(state.logsFor === id ? null : id, true) }, "Logs");
    r.cancelBtn = h("button", { type: "button", class: "btn sm danger", "data-action": "cancel", onclick: () => cancelJob(r) }, "Cancel");
    r.tr = h("tr", { class: "job", "data-job-id": id },
      h("td", { class: "job-cell" }, r.name, h("div", { class: "job-meta" }, r.idLink, r.created)),
      h("td", { class: "status-cell" }, r.badge, r.note, r.attempts),
      h("td", { class: "progress-cell" }, h("div", { class: "overall" }, r.bar, r.pct), r.now, r.stages),
      h("td", { class: "elapsed" }, r.elapsed, r.elapsedNote),
      h("td", {}, h("div", { class: "actions" }, r.reportBtn, r.shardsBtn, r.logsBtn, r.cancelBtn)));
    r.details = null;
    return r;
  }

  function updateRow(r, job) {
    const prevStatus = r.job ? r.job.status : null;
    r.job = job;
    setText(r.name, job.name || "(unnamed)");
    setText(r.created, fmtAgo(job.created_at));
    setAttr(r.created, "title", "submitted " + localTime(job.created_at) + " by key " + job.key_id);
    setText(r.badge, job.status);
    setAttr(r.badge, "data-status", job.status);
    setAttr(r.tr, "data-status", job.status);

    const note = job.status === "FAILED" ? (job.error || job.message || "failed") : (job.message || "");
    setText(r.note, note);
    r.note.className = "note" + (job.status === "FAILED" ? " error" : "");
    setAttr(r.note, "title", note);
    r.note.hidden = !note;
    setText(r.attempts, job.attempts > 1 ? "attempt " + job.attempts : "");
    r.attempts.hidden = !(job.attempts > 1);

    const pct = overallPercent(job);
    setAttr(r.bar, "aria-valuenow", pct);
    setAttr(r.bar, "aria-valuetext", pct + "% (" + job.status.toLowerCase() + ")");
    setAttr(r.bar, "data-status", job.status);
    r.fill.style.width = pct + "%";
    r.bar.classList.toggle("indeterminate", job.status === "RUNNING" && pct === 0);
    setText(r.pct, pct + "%");
    setText(r.now, currentActivity(job));
    renderStages(r, job);
    r.stages.hidden = job.status === "PENDING" || (!Object.keys(job.progress || {}).length && job.status !== "RUNNING");

    if (job.status === "PENDING") { setText(r.elapsed, "queued"); setText(r.elapsedNote, fmtAgo(job.created_at)); }
    else {
      setText(r.elapsed, job.started_at ? fmtDuration(job.elapsed_s) : "not started");
      setText(r.elapsedNote, !job.started_at ? "" : job.finished_at ? "ended " + fmtAgo(job.finished_at) : job.status === "RUNNING" ? "running" : "");
    }
    setAttr(r.elapsed.parentNode, "title",
      ["started " + localTime(job.started_at), job.finished_at ? "finished " + localTime(job.finished_at) : ""].filter((x) => x && x !== "started ").join("\n"));

    r.cancelBtn.hidden = !ACTIVE.has(job.status);
    r.reportBtn.disabled = ACTIVE.has(job.status);
    setAttr(r.reportBtn, "title", ACTIVE.has(job.status) ? "the report is written when the job finishes" : "open the job's report");
    r.tr.classList.toggle("focused", state.focus === job.id);
    return prevStatus !== job.status;
  }

  function renderStages(r, job) {
    const p = job.progress || {};
    const names = stagePlan(p);
    const key = names.join(",");
    if (r.stagesKey !== key) {
      r.stagesKey = key;
      r.stageEls = {};
      r.stages.replaceChildren();
      r.stages.style.setProperty("--n", names.length);
      for (const n of names) {
        const el = { fill: h("div", { class: "sfill" }), count: h("span", { class: "scount" }) };
        el.root = h("div", { class: "stage", "data-stage": n }, h("span", { class: "sname", text: n }), h("div", { class: "sbar" }, el.fill), el.count);
        r.stageEls[n] = el;
        r.stages.append(el.root);
      }
    }
    for (const n of names) {
      const st = p[n], el = r.stageEls[n];
      let stState = st ? st.status || "RUNNING" : (job.status === "SUCCEEDED" ? "SUCCEEDED" : "WAITING");
      if (stState === "RUNNING" && (job.status === "FAILED" || job.status === "STOPPED")) stState = job.status; // it ended mid-stage
      setAttr(el.root, "data-state", stState);
      el.fill.style.width = Math.round(100 * (st ? stageFraction(st) : stState === "SUCCEEDED" ? 1 : 0)) + "%";
      setText(el.count, st ? fmtShort(st.done) + "/" + fmtShort(st.total) : "\u2013");
      const bits = [n + ": " + stState.toLowerCase()];
      if (st) {
        bits.push(fmtCount(st.done) + " of " + fmtCount(st.total));
        if (st.status === "RUNNING" && fmtRate(st.rate_per_s)) bits.push(fmtRate(st.rate_per_s));
        if (st.shards !== undefined) bits.push(st.shards + " shards");
      }
      setAttr(el.root, "title", bits.join(", "));
    }
  }

  function renderSummary(jobs) {
    const counts = {};
    for (const j of jobs) counts[j.status] = (counts[j.status] || 0) + 1;
    const chips = STATUS_ORDER.filter((s) => counts[s]).map((s) =>
      h("span", { class: "chip status-chip", "data-status": s, text: counts[s] + " " + s.toLowerCase() }));
    $("#summary").replaceChildren(...chips);
  }

  function renderJobs(jobs) {
    state.jobs = jobs;
    const tbody = $("#jobs tbody");
    const seen = new Set();
    let anchor = null; // the last node placed
    for (const job of jobs) {
      seen.add(job.id);
      let r = state.rows.get(job.id);
      if (!r) { r = createRow(job); state.rows.set(job.id, r); }
      const changed = updateRow(r, job);
      const want = anchor ? anchor.nextSibling : tbody.firstChild;
      if (want !== r.tr) tbody.insertBefore(r.tr, want);
      anchor = r.tr;
      const isOpen = state.open.has(job.id);
      r.tr.classList.toggle("open", isOpen);
      setAttr(r.shardsBtn, "aria-expanded", isOpen ? "true" : "false");
      setAttr(r.logsBtn, "aria-pressed", state.logsFor === job.id ? "true" : "false");
      if (isOpen) {
        if (!r.details) { r.details = createDetails(r); r.detailsFresh = false; }
        if (r.details.previousSibling !== r.tr) tbody.insertBefore(r.details, r.tr.nextSibling);
        anchor = r.details;
        if (changed || ACTIVE.has(job.status) || !r.detailsFresh) loadDetails(r);
      } else if (r.details) {
        r.details.remove();
        r.details = null;
      }
    }
    for (const [id, r] of state.rows) {
      if (seen.has(id)) continue;
      r.tr.remove();
      if (r.details) r.details.remove();
      state.rows.delete(id);
    }
    const empty = $("#jobs-empty");
    empty.hidden = jobs.length > 0;
    $("#jobs").hidden = !jobs.length;
    if (!jobs.length) empty.replaceChildren(h("strong", { text: "No jobs yet" }), "Submit a job spec below; it shows up here with its progress.");
    renderSummary(jobs);
  }

  function clearJobs(title, text) {
    for (const r of state.rows.values()) { r.tr.remove(); if (r.details) r.details.remove(); }
    state.rows.clear();
    state.jobs = [];
    $("#summary").replaceChildren();
    const empty = $("#jobs-empty");
    empty.replaceChildren(h("strong", { text: title }), text);
    empty.hidden = false;
    $("#jobs").hidden = true;
  }

  // ---------------------------------------------------------------- details: shards and counts

  function createDetails(r) {
    r.shardsBox = h("div", { class: "shards" }, h("h3", { text: "Shards" }), h("p", { class: "meta", text: "loading the manifest\u2026" }));
    r.countsBox = h("div", { class: "counts" }, h("h3", { text: "Counts" }), h("p", { class: "meta", text: "\u2014" }));
    return h("tr", { class: "details", id: "details-" + r.id, "data-details-for": r.id },
      h("td", { colspan: 5 }, h("div", { class: "details-inner" }, r.shardsBox, r.countsBox)));
  }

  async function loadDetails(r) {
    if (r.detailsLoading) return;
    r.detailsLoading = true;
    try {
      const res = await api(r.job.links.manifest);
      if (res.status === 404) {
        renderShards(r, null, await detailOf(res));
      } else if (!res.ok) {
        renderShards(r, null, "manifest: " + (await detailOf(res)));
      } else {
        renderShards(r, await res.json());
      }
      if (!ACTIVE.has(r.job.status)) {
        const full = await apiJson(r.job.links.self);
        renderCounts(r, full.counts);
      } else {
        renderCounts(r, null, "counts come when the job finishes");
      }
      r.detailsFresh = true;
    } catch (e) {
      if (e.status !== 401) renderShards(r, null, e.message);
    } finally {
      r.detailsLoading = false;
    }
  }

  function renderShards(r, manifest, message) {
    const box = r.shardsBox;
    if (!box) return;
    if (!manifest) {
      fill(box, h("h3", { text: "Shards" }), h("p", { class: "meta", text: message || "no shards yet" }));
      return;
    }
    const shards = manifest.shards || [];
    const bytes = shards.reduce((a, s) => a + (s.bytes || 0), 0);
    const meta = plural(shards.length, "shard") + " \u00b7 " + plural(manifest.samples, "sample") + " \u00b7 " + fmtBytes(bytes) + " \u00b7 " + (manifest.complete ? "complete" : "in progress");
    const manifestLink = h("a", { href: r.job.links.manifest, class: "manifest-link",
      onclick: (ev) => { ev.preventDefault(); download(r.job.links.manifest, r.job.name + "-manifest.json"); } }, "manifest.json");
    const shown = shards.slice(0, 500);
    const items = shown.map((s) => h("li", { "data-shard": s.name },
      h("a", { href: r.job.links.self + "/shards/" + encodeURIComponent(s.name), class: "shard-link", download: s.name,
        title: "download " + s.name + " (sha256 " + s.sha256 + ")",
        onclick: (ev) => { ev.preventDefault(); download(r.job.links.self + "/shards/" + encodeURIComponent(s.name), s.name, s.bytes); } }, s.name),
      h("span", { class: "dim", text: plural(s.samples, "sample") }),
      h("span", { class: "dim", text: fmtBytes(s.bytes) })));
    const more = shards.length > shown.length ? h("p", { class: "meta", text: "and " + (shards.length - shown.length) + " more in the manifest" }) : null;
    fill(box, h("h3", { text: "Shards" }), h("p", { class: "meta" }, meta + " \u00b7 ", manifestLink), h("ul", { class: "shard-list" }, items), more);
  }

  function renderCounts(r, counts, message) {
    const box = r.countsBox;
    if (!box) return;
    if (!counts) {
      fill(box, h("h3", { text: "Counts" }), h("p", { class: "meta", text: message || "no counts for this job" }));
      return;
    }
    const rows = [["requested", "requested"], ["valid", "valid captions"], ["after_dedup", "after dedup"],
      ["after_balance", "after balancing"], ["samples", "samples"], ["shards", "shards"],
      ["prior_alignment_mean", "prior alignment"], ["seconds", "run time"]].filter(([k]) => counts[k] !== undefined && counts[k] !== null);
    const dl = h("dl", { class: "funnel" }, rows.map(([k, label]) => [
      h("dt", { text: label }),
      h("dd", { text: k === "seconds" ? fmtDuration(counts[k]) : typeof counts[k] === "number" && !Number.isInteger(counts[k]) ? counts[k].toFixed(3) : fmtCount(counts[k]) })]));
    fill(box, h("h3", { text: "Counts" }), rows.length ? dl : h("p", { class: "meta", text: "\u2014" }));
  }

  // `#job=ID`, or a click on a job's id: open its shards and its log, and keep the link shareable.
  function focusJob(id) {
    state.focus = id;
    state.open.add(id);
    history.replaceState(history.state, "", location.pathname + location.search + "#job=" + encodeURIComponent(id));
    renderJobs(state.jobs);
    const r = state.rows.get(id);
    if (r) r.tr.scrollIntoView({ block: "nearest" });
    showLogs(id);
  }

  function toggleShards(id) {
    if (state.open.has(id)) state.open.delete(id); else state.open.add(id);
    renderJobs(state.jobs);
  }

  // Downloads need the bearer header, so they are fetched here and saved from a blob URL
  // (or streamed to a file the user picks, for big shards where the browser supports it).
  async function download(path, filename, size) {
    try {
      if (size > 256 * 1024 * 1024 && window.showSaveFilePicker) {
        const handle = await window.showSaveFilePicker({ suggestedName: filename });
        const res = await api(path);
        if (!res.ok) throw new ApiError(res.status, await detailOf(res));
        await res.body.pipeTo(await handle.createWritable());
        toast("saved " + filename);
        return;
      }
      toast("downloading " + filename + "\u2026");
      const res = await api(path);
      if (!res.ok) throw new ApiError(res.status, await detailOf(res));
      const url = URL.createObjectURL(await res.blob());
      const a = h("a", { href: url, download: filename, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      toast("saved " + filename);
    } catch (e) {
      if (e.name === "AbortError") return;
      toast("cannot download " + filename + ": " + e.message, "error");
    }
  }

  // ---------------------------------------------------------------- logs

  function showLogs(id, scroll) {
    state.logsFor = id;
    for (const r of state.rows.values()) setAttr(r.logsBtn, "aria-pressed", r.id === id ? "true" : "false");
    const pre = $("#logs");
    const on = !!id;
    pre.hidden = !on;
    $("#logs-empty").hidden = on;
    $("#logs-refresh").hidden = !on;
    $("#logs-close").hidden = !on;
    $("#follow-wrap").hidden = !on;
    const title = $("#logs-title");
    if (!on) { title.replaceChildren("Logs"); pre.textContent = ""; return; }
    const r = state.rows.get(id);
    title.replaceChildren("Logs \u00b7 " + (r ? r.job.name : ""), h("span", { class: "job-id", text: id }));
    pre.dataset.jobId = id;
    pre.textContent = "loading\u2026";
    loadLogs(true);
    if (scroll) $("#logs-card").scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  async function loadLogs(force) {
    const id = state.logsFor;
    if (!id) return;
    const r = state.rows.get(id);
    if (!force && (!$("#logs-follow").checked || (r && !ACTIVE.has(r.job.status) && state.logsDoneFor === id))) return;
    const pre = $("#logs");
    try {
      const res = await api("/v1/jobs/" + encodeURIComponent(id) + "/logs?tail=" + LOG_TAIL);
      const text = res.ok ? await res.text() : "(" + (await detailOf(res)) + ")";
      if (state.logsFor !== id) return;
      const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      const shown = text || "(no log lines yet)";
      if (pre.textContent !== shown) {
        pre.textContent = shown;
        if (atEnd || force) pre.scrollTop = pre.scrollHeight;
      }
      state.logsDoneFor = r && !ACTIVE.has(r.job.status) ? id : null;
    } catch (e) {
      if (e.status !== 401) pre.textContent = "(cannot load the log: " + e.message + ")";
    }
  }

  // ---------------------------------------------------------------- report, cancel

  async function openReport(job) {
    try {
      const res = await api(job.links.report);
      if (!res.ok) { toast("No report for " + job.name + ": " + (await detailOf(res)), "error"); return; }
      const html = await res.text();
      state.report = { name: job.name, html: html };
      $("#report-title").textContent = "Report \u00b7 " + job.name;
      // An opaque-origin sandbox: the report's scripts run, but cannot read this page or its key.
      $("#report-frame").srcdoc = html;
      $("#report-dialog").showModal();
    } catch (e) {
      if (e.status !== 401) toast("cannot load the report: " + e.message, "error");
    }
  }

  async function cancelJob(r) {
    if (!window.confirm("Cancel job " + r.job.name + " (" + r.id + ")? Its finished shards stay valid; submitting the same spec resumes it.")) return;
    r.cancelBtn.disabled = true;
    try {
      const res = await api(r.job.links.cancel, { method: "POST" });
      if (!res.ok) toast("cannot cancel: " + (await detailOf(res)), "error");
      else toast("stopping " + r.job.name);
      refresh();
    } catch (e) {
      if (e.status !== 401) toast("cannot cancel: " + e.message, "error");
    } finally {
      r.cancelBtn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- submit

  function showResult(kind, title, lines) {
    const box = $("#submit-result");
    box.className = "result " + kind;
    fill(box, h("div", {}, title), lines && lines.length ? h("ul", { id: "submit-problems" }, lines.map((l) => h("li", { text: l }))) : null);
    box.hidden = false;
  }

  async function submitSpec(ev) {
    if (ev) ev.preventDefault();
    const text = $("#spec").value;
    if (!text.trim()) { showResult("bad", "The spec is empty: paste a job spec (YAML or JSON) first."); return; }
    if (!state.key) { authFailed(); showResult("bad", "Invalid or missing API key: enter your key at the top first."); return; }
    let ctype = "application/yaml";
    try { JSON.parse(text); ctype = "application/json"; } catch (e) { /* not JSON: send it as YAML */ }
    const btn = $("#submit-btn");
    btn.disabled = true;
    try {
      const res = await api("/v1/jobs", { method: "POST", headers: { "Content-Type": ctype }, body: text });
      if (res.status === 202) {
        const job = await res.json();
        showResult("ok", "Queued " + job.name + " as job " + job.id + ".");
        refresh();
        return;
      }
      const detail = await detailOf(res);
      const lines = Array.isArray(detail) ? detail.map(String) : [String(detail)];
      const what = res.status === 422 ? "The service found " + lines.length + " problem" + (lines.length === 1 ? "" : "s") + " in the spec:"
        : "The service refused the job (HTTP " + res.status + "):";
      showResult("bad", what, lines);
    } catch (e) {
      showResult("bad", e.status === 401 ? "Invalid or missing API key: the service answered 401." : "Cannot submit: " + e.message);
    } finally {
      btn.disabled = false;
    }
  }

  // ---------------------------------------------------------------- consumer runs

  async function refreshRuns() {
    if (!state.consumers) state.consumers = ((await apiJson("/v1/consumers")).consumers || []).map((c) => c.name);
    const lists = await Promise.all(state.consumers.map((n) =>
      apiJson("/v1/consumers/" + encodeURIComponent(n) + "/runs?limit=20" + (state.mine ? "&mine=true" : ""))));
    const runs = lists.flatMap((l) => l.runs || []).sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
    $("#runs-card").hidden = !runs.length;
    fill($("#runs tbody"), runs.map(runRow));
  }

  function runRow(run) {
    const st = Object.values(run.progress || {})[0] || {};
    let prog = st.total ? fmtCount(st.done) + "/" + fmtCount(st.total) : "\u2013";
    if (st.step && ACTIVE.has(run.status)) prog += " \u00b7 " + st.step;
    const files = state.runFiles.get(run.id);
    let cell = "\u2013";
    if (files) {
      cell = files.map((f) => h("button", { type: "button", class: "btn sm", "data-file": f.name,
        onclick: () => download(f.url, f.name.split("/").pop(), f.bytes) }, f.name));
    } else if (run.status === "SUCCEEDED") {
      cell = h("button", { type: "button", class: "btn sm", "data-action": "files", onclick: () => loadRunFiles(run) }, "Files");
    }
    const note = run.status === "FAILED" ? (run.error || "failed") : (run.message || "");
    return h("tr", { class: "run", "data-run-id": run.id, "data-status": run.status },
      h("td", {}, h("div", { class: "job-name", text: run.consumer }),
        h("div", { class: "job-meta" }, h("span", { class: "job-id", text: run.id }),
          h("span", { class: "created", text: fmtAgo(run.created_at), title: localTime(run.created_at) }))),
      h("td", {}, h("span", { class: "status", "data-status": run.status, text: run.status }),
        note ? h("div", { class: "note" + (run.status === "FAILED" ? " error" : ""), text: note, title: note }) : null),
      h("td", { class: "run-progress", text: prog }),
      h("td", {}, h("div", { class: "actions" }, cell)));
  }

  async function loadRunFiles(run) {
    try {
      state.runFiles.set(run.id, (await apiJson(run.links.files)).files || []);
      await refreshRuns();
    } catch (e) {
      toast("cannot list the files of run " + run.id + ": " + e.message, "error");
    }
  }

  // ---------------------------------------------------------------- the refresh loop

  async function refresh() {
    if (state.busy) return;
    if (!state.key) {
      setConn("idle", "no key");
      clearJobs("No API key yet", "Enter your API key above to see your jobs.");
      $("#runs-card").hidden = true;
      return;
    }
    if (state.authFailed) return;
    state.busy = true;
    try {
      const data = await apiJson("/v1/jobs?limit=50" + (state.mine ? "&mine=true" : ""));
      $("#net-error").hidden = true;
      renderJobs(data.jobs || []);
      setConn("ok", "live \u00b7 updated " + new Date().toLocaleTimeString());
      if (state.focus && state.rows.has(state.focus) && !state.focusShown) {
        state.focusShown = true;
        state.rows.get(state.focus).tr.scrollIntoView({ block: "nearest" });
        if (state.logsFor === state.focus) showLogs(state.focus);
      }
      loadLogs(false);
      refreshRuns().catch((e) => { if (e.status !== 401) $("#runs-card").hidden = true; });
    } catch (e) {
      if (e.status === 401) {
        clearJobs("Invalid or missing API key", "The service refused the key. Enter a valid one above.");
      } else {
        const net = $("#net-error");
        net.textContent = (e.status ? "The service answered " + e.status + ": " + e.message : "Cannot reach the service") + " \u2014 retrying every few seconds.";
        net.hidden = false;
        setConn("busy", "retrying\u2026");
      }
    } finally {
      state.busy = false;
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(async () => {
      if (!document.hidden || !state.rows.size) await refresh();
      schedule();
    }, REFRESH_MS);
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    const stored = loadKey();
    if (stored) setKey(stored);
    readFragment();

    $("#key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      setKey($("#api-key").value.trim());
      clearJobs("Loading\u2026", "");
      refresh();
    });
    $("#forget-key").addEventListener("click", () => {
      setKey(null);
      showLogs(null);
      refresh();
    });
    $("#mine").addEventListener("change", (ev) => { state.mine = ev.target.checked; refresh(); });
    $("#submit-form").addEventListener("submit", submitSpec);
    $("#spec").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) submitSpec(ev);
    });
    $("#spec-file").addEventListener("change", async (ev) => {
      const file = ev.target.files && ev.target.files[0];
      if (file) $("#spec").value = await file.text();
      ev.target.value = "";
    });
    $("#logs-refresh").addEventListener("click", () => loadLogs(true));
    $("#logs-close").addEventListener("click", () => showLogs(null));
    $("#logs-follow").addEventListener("change", () => loadLogs(true));
    $("#report-close").addEventListener("click", () => $("#report-dialog").close());
    $("#report-dialog").addEventListener("close", () => { $("#report-frame").srcdoc = ""; });
    $("#report-download").addEventListener("click", () => {
      if (!state.report) return;
      const url = URL.createObjectURL(new Blob([state.report.html], { type: "text/html" }));
      const a = h("a", { href: url, download: state.report.name + "-report.html", hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    });
    window.addEventListener("hashchange", () => {
      state.focusShown = false;
      const before = state.focus;
      readFragment();
      if (state.focus && state.focus !== before) renderJobs(state.jobs);
      refresh();
    });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });

    refresh();
    schedule();
  }

  init();
})();
