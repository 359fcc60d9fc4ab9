
"use strict";
(function () {
  // The token lives in this tab's sessionStorage only; it is sent as a Bearer header to this
  // origin's API and never put in a URL or written to the console.
  const KEY = "mlplatform.review.token";
  const config = JSON.parse(document.getElementById("review-config").textContent);
  const LOWER = new Set(config.lower_is_better);
  const KNOWN = config.metric_order;
  const where = location.pathname.match(/^(.*?)\/review(?:\/([^/]+))?\/?$/);
  const base = where ? where[1] : "";
  const project = where && where[2] ? decodeURIComponent(where[2]) : null;
  const projectApi = project ? base + "/v1/projects/" + encodeURIComponent(project) : null;
  const $ = (id) => document.getElementById(id);
  const content = $("content");
  let generation = 0; // ignores answers to requests made before the last (re)load
  // The project's shadow candidate (as the API last said), the cards and the panel it shows on.
  const shadow = { bundleId: null, cards: [], panel: null };

  // -- DOM and formatting helpers -------------------------------------------------------

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  function num(v) {
    return typeof v === "number" && Number.isFinite(v) ? v : null;
  }

  function fmt(v) {
    const x = num(v);
    if (x === null) return "—";
    if (x !== 0 && (Math.abs(x) >= 1e6 || Math.abs(x) < 1e-3)) return x.toPrecision(4);
    return x.toFixed(4);
  }

  function count(v) {
    const x = num(v);
    return x === null ? "—" : Math.round(x).toLocaleString("en-US");
  }

  function when(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function short(id, n) {
    return id ? String(id).slice(0, n || 8) : "—";
  }

  function better(a, b, metric) {
    return LOWER.has(metric) ? a < b : a > b;
  }

  function direction(metric) {
    return LOWER.has(metric) ? "lower is better" : "higher is better";
  }

  function metricNames(primary, models) {
    const present = new Set();
    for (const m of models) for (const k of Object.keys(m.metrics || {})) present.add(k);
    const out = primary && present.has(primary) ? [primary] : [];
    for (const k of KNOWN) if (present.has(k) && !out.includes(k)) out.push(k);
    for (const k of [...present].sort()) if (!out.includes(k)) out.push(k);
    return out;
  }

  function bound(g) {
    const lo = num(g.min), hi = num(g.max);
    const parts = [];
    if (lo !== null && hi !== null) parts.push("[" + fmt(lo) + ", " + fmt(hi) + "]");
    else if (lo !== null) parts.push("≥ " + fmt(lo));
    else if (hi !== null) parts.push("≤ " + fmt(hi));
    // A gate relative to the best baseline of the evaluation (min_lift / beat_baseline).
    const lift = num(g.min_lift);
    if (lift !== null || g.beat_baseline) {
      const need = [lift !== null ? "lift ≥ " + fmt(lift) : null, g.beat_baseline ? "lift > 0" : null].filter(Boolean).join(" and ");
      parts.push(g.baseline ? need + " over " + g.baseline + " (" + fmt(g.baseline_value) + "): lift " + fmt(g.lift) : need + " (no baseline)");
    }
    return parts.length ? parts.join("; ") : "—";
  }

  function modelName(m) {
    return m.candidate || short(m.bundle_id);
  }

  function showAlert(node, text) {
    node.textContent = text || "";
    node.hidden = !text;
  }

  function setStatus(text) {
    $("status").textContent = text || "";
  }

  // -- API ----------------------------------------------------------------------------

  function getToken() {
    try {
      return sessionStorage.getItem(KEY) || "";
    } catch (e) {
      return "";
    }
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
    }
  }

  function detailText(body) {
    const d = body && body.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map((e) => (e.field ? e.field + ": " : "") + (e.msg || "")).join("; ");
    return d === undefined ? "" : JSON.stringify(d);
  }

  async function api(method, url, body, accept) {
    const headers = { Accept: accept || "application/json" };
    const token = getToken();
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (e) {
      throw new ApiError(0, "the server could not be reached");
    }
    if (!resp.ok) {
      let detail = "";
      try {
        detail = detailText(await resp.json());
      } catch (e) {
        detail = "";
      }
      throw new ApiError(resp.status, detail || resp.statusText || "request failed");
    }
    return resp;
  }

  function describe(err) {
    if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
    const text = err.status ? "HTTP " + err.status + ": " + err.detail : err.detail;
    if (err.status === 401) return text + " — check the token.";
    if (err.status === 403 && /approver/.test(err.detail)) {
      return text + " — a reader token can view candidates but cannot approve, reject or run them in shadow.";
    }
    return text;
  }

  // -- page ---------------------------------------------------------------------------

  function updateTokenState() {
    const has = Boolean(getToken());
    $("forget").hidden = !has;
    $("token-state").textContent = has ? "A token is set for this tab." : "No token set.";
    $("token").placeholder = has ? "paste another token to replace it" : "paste a reader or approver token";
  }

  async function load() {
    const mine = ++generation;
    showAlert($("alert"), "");
    content.replaceChildren();
    updateTokenState();
    $("home").href = base + "/review";
    if (project) {
      $("title").textContent = "Review candidates of " + project;
      document.title = "Review " + project + " — mlplatform";
    }
    if (!getToken()) {
      setStatus("Paste a token above to load " + (project ? "the candidates of " + project : "the projects") + ".");
      return;
    }
    setStatus("Loading…");
    try {
      if (project) await loadProject(mine);
      else await loadIndex(mine);
      if (mine === generation) setStatus("");
    } catch (err) {
      if (mine !== generation) return;
      setStatus("");
      showAlert($("alert"), "Could not load " + (project ? "the candidates of " + project : "the projects") + " — " + describe(err));
    }
  }

  async function loadIndex(mine) {
    const data = await (await api("GET", base + "/v1/projects")).json();
    if (mine !== generation) return;
    const items = data.projects.map((p) =>
      h("li", {},
        h("a", { href: base + "/review/" + encodeURIComponent(p.name) }, p.name),
        " — ", p.description || p.task,
        h("span", { class: "muted" }, " · production: "),
        p.production_bundle_id ? h("code", { title: p.production_bundle_id }, short(p.production_bundle_id)) : "none yet"));
    content.append(
      h("h2", {}, "Projects"),
      items.length ? h("ul", { class: "projects" }, items) : h("p", { class: "muted" }, "No projects."));
  }

  async function loadProject(mine) {
    const data = await (await api("GET", projectApi + "/candidates")).json();
    if (mine !== generation) return;
    const prod = data.production;
    const cands = data.candidates;
    const primary = (prod && prod.primary_metric) || (cands[0] && cands[0].primary_metric) || null;
    const groups = holdoutGroups(prod, cands);
    const cards = [];
    const sections = groups.map((g, i) => {
      const groupCards = g.candidates.map((c) => candidateCard(c, primary));
      cards.push(...groupCards);
      return holdoutSection(g, prod, groupCards, primary, i === 0);
    });
    const panel = h("section", { class: "since", id: "since-promotion", "aria-labelledby": "since-heading" },
      h("h2", { id: "since-heading" }, "Since promotion"), h("p", { class: "muted" }, "Loading…"));
    content.append(
      summary(prod, cands, primary),
      panel,
      h("p", { class: "help", id: "holdout-help" },
        "Each cutoff has its own holdout (the partition after its training window). Metrics are " +
        "compared, and the best highlighted, only among bundles evaluated on the same holdout."),
      ...(cands.length ? [] : [h("p", { class: "muted" }, "No candidates are waiting for review.")]),
      ...sections);
    for (const card of cards) loadManifest(card, mine);
    shadow.cards = cards;
    shadow.panel = panel;
    loadShadow(mine);
    // A link to one report (the Dagster UI's, or a card's): open it, even for a cutoff
    // with no bundle to review (no candidate passed its gates).
    const wanted = reportInHash();
    if (wanted && !document.getElementById("report-" + wanted)) {
      content.append(reportDetails(wanted, null, false));
    }
    if (wanted) openReport(wanted);
    loadSincePromotion(panel, mine);
  }

  function reportInHash() {
    const m = /^#report-([0-9]{4}-[0-9]{2}-[0-9]{2})$/.exec(location.hash);
    return m ? m[1] : null;
  }

  function openReport(cutoff) {
    const details = document.getElementById("report-" + cutoff);
    if (!details) return;
    details.open = true;
    details.scrollIntoView();
  }

  // -- the "since promotion" panel: traffic and shadow agreement (prediction log), live drift
  // and decay (the monitoring asset's daily summaries) --------------------------------------

  async function loadSincePromotion(panel, mine) {
    let data;
    try {
      data = await (await api("GET", projectApi + "/since-promotion")).json();
    } catch (err) {
      if (mine === generation) panel.replaceChildren(panel.firstChild, h("p", { class: "muted" }, "Not available — " + describe(err)));
      return;
    }
    if (mine !== generation) return;
    const t = data.traffic;
    const s = data.shadow;
    const days = data.monitoring;
    const drifted = days.filter((d) => num(d.drifted) !== null && d.drifted > 0);
    const decayed = days.filter((d) => d.decay_passed === false);
    const labelled = days.filter((d) => d.decay_passed !== null && d.decay_passed !== undefined);
    const unit = days.some((d) => d.end) ? "period" : "day"; // monitoring.period: partition
    const row = (name, value, id) => h("tr", { id }, h("th", { class: "l", scope: "row" }, name), h("td", {}, value));
    const rows = [
      row("Promoted", (data.production ? short(data.production) + " · " : "") + when(data.promoted_at), "since-promoted"),
      row("Logged traffic", count(t.requests) + " requests · " + count(t.rows) + " rows · p50 " + fmt(t.latency_p50_ms) +
        " ms · p95 " + fmt(t.latency_p95_ms) + " ms", "since-traffic"),
      row("Live drift", days.length ? drifted.length + " of " + days.length + " monitored " + unit + (days.length === 1 ? "" : "s") +
        " drifted" + (drifted.length ? " (latest " + drifted[drifted.length - 1].day + ": " + drifted[drifted.length - 1].drift + ")" : "")
        : "no monitoring run yet", "since-drift"),
      row("Decay", labelled.length ? decayed.length + " of " + labelled.length + " labelled " + unit + (labelled.length === 1 ? "" : "s") +
        " decayed · latest " + labelled[labelled.length - 1].decay : "no labels landed yet", "since-decay"),
      row("Shadow", s ? ["agreement ", h("strong", { id: "shadow-agreement" }, s.rate === null ? "—" : (100 * s.rate).toFixed(1) + "%"),
        " with production on " + count(s.rows) + " logged rows (" + count(s.agreed) + " agreed) · bundle ",
        h("code", { title: s.shadow_bundle_id }, short(s.shadow_bundle_id)), shadowLive(s, days)] : "no shadow candidate", "since-shadow"),
    ];
    panel.replaceChildren(panel.firstChild, h("table", { class: "since-table" }, h("tbody", {}, rows)));
    for (const tag of content.querySelectorAll(".shadow-tag")) tag.remove();
    const card = s && content.querySelector('article[data-bundle-id="' + CSS.escape(s.shadow_bundle_id) + '"] h3');
    if (card) card.append(h("span", { class: "tag shadow-tag" }, "in shadow" + (s.rate === null ? "" : " · " + (100 * s.rate).toFixed(1) + "% agreement")));
  }

  // The shadow's metric on labelled days vs production's, from the monitoring summaries.
  function shadowLive(s, days) {
    const both = days.filter((d) => d.shadow_bundle_id === s.shadow_bundle_id && num(d.shadow_live) !== null && num(d.decay_live) !== null);
    if (!both.length) return " · no labelled day yet";
    const last = both[both.length - 1];
    return " · on the labels of " + last.day + ": " + (last.decay_metric || "metric") + " " + fmt(last.shadow_live) +
      " (shadow) vs " + fmt(last.decay_live) + " (production)";
  }

  // Candidates by cutoff, newest first; production joins the group of its own cutoff (the only
  // holdout its manifest metrics were measured on).
  function holdoutGroups(prod, cands) {
    const byCutoff = new Map();
    const group = (cutoff) => {
      if (!byCutoff.has(cutoff)) byCutoff.set(cutoff, []);
      return byCutoff.get(cutoff);
    };
    for (const c of cands) group(c.cutoff || "—").push(c);
    if (prod) group(prod.cutoff || "—");
    return [...byCutoff.keys()].sort().reverse().map((cutoff) => ({
      cutoff,
      candidates: byCutoff.get(cutoff),
      production: prod && (prod.cutoff || "—") === cutoff ? prod : null,
    }));
  }

  function holdoutSection(g, prod, cards, primary, first) {
    const id = "holdout-" + g.cutoff;
    let note;
    if (g.production) {
      note = "Production was evaluated on this holdout: it is compared side by side.";
    } else if (prod) {
      note = ["Production ", h("code", { title: prod.bundle_id }, short(prod.bundle_id)),
        " was evaluated on the holdout of cutoff " + (prod.cutoff || "—") + ", so its metrics are not " +
        "shown here; the evaluation report scores it on this holdout when it did not train on it."];
    } else {
      note = "No production bundle yet.";
    }
    return h("section", { class: "holdout", id, "data-cutoff": g.cutoff, "aria-labelledby": id + "-heading" },
      h("h2", { id: id + "-heading" }, "Cutoff " + g.cutoff,
        h("span", { class: "sub" }, " · holdout " + g.cutoff + " · " + g.candidates.length + " candidate" +
          (g.candidates.length === 1 ? "" : "s")),
        g.production ? h("span", { class: "tag" }, "production") : null),
      h("p", { class: "muted holdout-note" }, note),
      comparison(g, primary),
      cards.length ? h("div", { class: "cards", "aria-labelledby": id + "-heading" }, cards.map((c) => c.node)) : null,
      reportDetails(g.cutoff, g.candidates.map(modelName), first));
  }

  function summary(prod, cands, primary) {
    const parts = [];
    if (prod) {
      parts.push(h("strong", {}, "Production: "), modelName(prod), " ",
        h("code", { title: prod.bundle_id }, short(prod.bundle_id)),
        " · cutoff " + (prod.cutoff || "—") + " · published " + when(prod.created_at));
    } else {
      parts.push(h("strong", {}, "No production bundle yet."));
    }
    parts.push(" · " + cands.length + " candidate" + (cands.length === 1 ? "" : "s"));
    if (primary) parts.push(" · primary metric ", h("strong", {}, primary), " (" + direction(primary) + ")");
    return h("p", { class: "summary", id: "summary" }, parts);
  }

  function comparison(g, primary) {
    const prod = g.production;
    const models = (prod ? [prod] : []).concat(g.candidates);
    const names = metricNames(primary, models);
    const head = h("tr", {}, h("th", { class: "l", scope: "col" }, "Metric"),
      models.map((m, i) =>
        h("th", { scope: "col" }, modelName(m),
          prod && i === 0 ? h("span", { class: "tag" }, "production") : null,
          h("span", { class: "sub" }, h("code", { title: m.bundle_id }, short(m.bundle_id)), " · " + (m.cutoff || "—")))));
    const rows = names.map((metric) => {
      const values = models.map((m) => num((m.metrics || {})[metric]));
      const finite = values.filter((v) => v !== null);
      let best = null;
      if (models.length > 1 && finite.length) best = LOWER.has(metric) ? Math.min(...finite) : Math.max(...finite);
      const cells = values.map((v, i) => {
        const isBest = best !== null && v === best;
        const cell = h("td", { class: isBest ? "best" : null }, fmt(v), isBest ? h("span", { class: "sr-only" }, " (best)") : null);
        if (prod && i > 0 && v !== null) {
          const p = num((prod.metrics || {})[metric]);
          if (p !== null && v !== p) {
            const d = v - p;
            cell.append(h("span", { class: "delta " + (better(v, p, metric) ? "up" : "down") },
              (d > 0 ? "+" : "−") + fmt(Math.abs(d)) + " vs production"));
          }
        }
        return cell;
      });
      return h("tr", { class: metric === primary ? "primary" : null },
        h("th", { class: "l", scope: "row", title: direction(metric) },
          metric + (LOWER.has(metric) ? " ↓" : " ↑"),
          metric === primary ? h("span", { class: "tag" }, "primary") : null),
        cells);
    });
    const gates = h("tr", {}, h("th", { class: "l", scope: "row" }, "gates"),
      models.map((m) => {
        const gs = m.gates || [];
        const failed = gs.filter((g) => !g.passed).length;
        if (!gs.length) return h("td", {}, "—");
        return h("td", { class: failed ? "fail" : "pass" }, failed ? failed + " failed" : "all passed");
      }));
    return h("div", { class: "scroll" },
      h("table", { class: "comparison", id: "comparison-" + g.cutoff },
        h("caption", {}, "Holdout " + g.cutoff + (prod ? ": candidates vs production" : ": candidates") +
          ". Best value per metric among these bundles highlighted; ↑ higher is better, ↓ lower is better."),
        h("thead", {}, head), h("tbody", {}, rows, gates)));
  }

  function gatesTable(c) {
    const gs = c.gates || [];
    if (!gs.length) return h("p", { class: "muted" }, "No gates configured.");
    return h("table", { class: "gates" },
      h("thead", {}, h("tr", {},
        h("th", { class: "l", scope: "col" }, "Metric"), h("th", { scope: "col" }, "Value"),
        h("th", { scope: "col" }, "Bound"), h("th", { scope: "col" }, "Result"))),
      h("tbody", {}, gs.map((g) => h("tr", {},
        h("td", { class: "l" }, g.metric), h("td", {}, fmt(g.value)), h("td", {}, bound(g)),
        h("td", { class: g.passed ? "pass" : "fail" }, g.passed ? "pass" : "fail")))));
  }

  function renderDecisions(slot, c) {
    const all = c.approvals.concat(c.rejections).sort((a, b) => a.id - b.id);
    if (!all.length) {
      slot.replaceChildren(h("p", { class: "muted" }, "No approvals or rejections yet."));
      return;
    }
    slot.replaceChildren(h("ul", { class: "decisions" }, all.map((d) =>
      h("li", { class: d.decision },
        h("strong", {}, (d.decision === "approve" ? "✓ approved by " : "✗ rejected by ") + d.actor),
        " · ", h("time", { datetime: d.created_at }, when(d.created_at)),
        d.comment ? h("q", {}, d.comment) : null))));
  }

  function candidateCard(c, primary) {
    const id = short(c.bundle_id, 12);
    const headingId = "cand-" + id;
    const gs = c.gates || [];
    const failed = gs.filter((g) => !g.passed).length;
    const training = h("div", { class: "training" }, h("p", { class: "muted" }, "Loading the training manifest…"));
    const decisions = h("div", { class: "decision-list" });
    const comment = h("textarea", { id: "comment-" + id, maxlength: "4000", rows: "2", placeholder: "Why approve or reject (stored with the decision)" });
    const alert = h("div", { class: "alert", role: "alert", hidden: true });
    const done = h("span", { class: "done", role: "status" });
    const approve = h("button", { type: "button", class: "approve", "aria-describedby": headingId }, "Approve");
    const reject = h("button", { type: "button", class: "reject", "aria-describedby": headingId }, "Reject");
    const toggle = h("button", { type: "button", class: "secondary shadow-toggle", "aria-describedby": headingId, hidden: true }, "Run in shadow");
    const card = { c, training, decisions, comment, alert, done, toggle, buttons: [approve, reject, toggle] };
    approve.addEventListener("click", () => decide(card, "approve"));
    reject.addEventListener("click", () => decide(card, "reject"));
    toggle.addEventListener("click", () => toggleShadow(card));
    renderDecisions(decisions, c);
    const p = primary ? num((c.metrics || {})[primary]) : null;
    card.node = h("article", { class: "card candidate", "data-bundle-id": c.bundle_id, "aria-labelledby": headingId },
      h("div", { class: "card-head" },
        h("h3", { id: headingId }, modelName(c), " ", h("code", { title: c.bundle_id }, short(c.bundle_id))),
        primary ? h("span", {}, primary + " " + fmt(p)) : null,
        gs.length ? h("span", { class: "tag " + (failed ? "fail" : "pass") }, failed ? failed + " gate(s) failed" : "gates passed") : null,
        c.previously_production ? h("span", { class: "tag" }, "was production before") : null,
        h("span", { class: "meta" }, "cutoff " + (c.cutoff || "—") + " · published " + when(c.created_at)),
        c.cutoff ? reportLink(c.cutoff) : null),
      h("div", { class: "card-body" },
        h("section", {}, h("h4", {}, "Gates"), gatesTable(c)),
        h("section", {}, h("h4", {}, "Training data"), training),
        h("section", {}, h("h4", {}, "Decisions"), decisions)),
      h("div", { class: "decide" },
        h("label", { for: comment.id }, "Comment on " + modelName(c) + " (" + short(c.bundle_id) + ")"),
        comment,
        h("div", { class: "actions" }, approve, reject, toggle, done),
        alert));
    return card;
  }

  async function loadManifest(card, mine) {
    const url = base + "/v1/bundles/" + encodeURIComponent(card.c.bundle_id) + "/files/manifest.json";
    try {
      const manifest = await (await api("GET", url)).json();
      if (mine === generation) card.training.replaceChildren(trainingFacts(manifest.training_manifest || {}));
    } catch (err) {
      if (mine === generation) card.training.replaceChildren(h("p", { class: "fail" }, "Could not load the manifest — " + describe(err)));
    }
  }

  function trainingFacts(tm) {
    const parts = (tm.partitions || []).map(String).sort();
    const rows = tm.rows || {};
    const versions = tm.data_versions || {};
    const counted = parts.map((k) => num(rows[k])).filter((v) => v !== null);
    const total = counted.length ? counted.reduce((s, v) => s + v, 0) : null;
    const span = !parts.length ? "—" : parts.length === 1 ? parts[0] : parts[0] + " – " + parts[parts.length - 1];
    const table = h("table", { class: "partitions" },
      h("thead", {}, h("tr", {},
        h("th", { class: "l", scope: "col" }, "Partition"), h("th", { scope: "col" }, "Rows"),
        h("th", { class: "l", scope: "col" }, "Data version"))),
      h("tbody", {}, parts.map((k) => h("tr", {},
        h("td", { class: "l" }, k), h("td", {}, count(rows[k])),
        h("td", { class: "l" }, versions[k] ? h("code", { title: versions[k] }, short(versions[k], 12) + "…") : "—")))));
    return h("div", {},
      h("dl", { class: "facts" },
        h("dt", {}, "Partitions"), h("dd", {}, span + " (" + parts.length + ")"),
        h("dt", {}, "Rows"), h("dd", {}, count(total))),
      parts.length ? h("details", { open: parts.length <= 4 }, h("summary", {}, "Per partition"), table) : null);
  }

  async function decide(card, verdict) {
    const word = verdict === "approve" ? "Approve" : "Reject";
    showAlert(card.alert, "");
    card.done.textContent = verdict === "approve" ? "Approving…" : "Rejecting…";
    for (const b of card.buttons) b.disabled = true;
    try {
      const url = projectApi + "/candidates/" + encodeURIComponent(card.c.bundle_id) + "/" + verdict;
      const d = await (await api("POST", url, { comment: card.comment.value.trim() })).json();
      (d.decision === "approve" ? card.c.approvals : card.c.rejections).push(d);
      renderDecisions(card.decisions, card.c);
      card.comment.value = "";
      card.done.className = "done " + d.decision;
      card.done.textContent = "Recorded: " + (d.decision === "approve" ? "approved by " : "rejected by ") + d.actor + ".";
    } catch (err) {
      card.done.textContent = "";
      showAlert(card.alert, word + " failed — " + describe(err));
    } finally {
      for (const b of card.buttons) b.disabled = false;
    }
  }

  // -- shadow: an approver runs a candidate beside production on logged requests ------------

  async function loadShadow(mine) {
    let d;
    try {
      d = await (await api("GET", projectApi + "/shadow")).json();
      if (mine !== generation) return;
      shadow.bundleId = d.bundle_id;
    } catch (err) {
      return; // the buttons stay hidden: the page's load reports what is wrong
    }
    showShadow();
    const refused = d.error && shadow.cards.find((card) => card.c.bundle_id === d.bundle_id);
    if (refused) showAlert(refused.alert, "Attached in shadow but not used by serving — " + d.error);
  }

  function showShadow() {
    for (const card of shadow.cards) {
      const on = card.c.bundle_id === shadow.bundleId;
      card.toggle.textContent = on ? "Stop shadow" : "Run in shadow";
      card.toggle.title = on
        ? "Stop predicting logged requests with this candidate"
        : "Predict every logged request with this candidate too (never returned)";
      card.toggle.hidden = false;
    }
  }

  async function toggleShadow(card) {
    const stop = card.c.bundle_id === shadow.bundleId;
    const mine = generation;
    showAlert(card.alert, "");
    card.done.className = "done";
    card.done.textContent = stop ? "Stopping the shadow…" : "Starting the shadow…";
    for (const b of card.buttons) b.disabled = true;
    try {
      const resp = stop
        ? await api("DELETE", projectApi + "/shadow")
        : await api("POST", projectApi + "/candidates/" + encodeURIComponent(card.c.bundle_id) + "/shadow");
      const d = await resp.json();
      if (mine !== generation) return;
      shadow.bundleId = d.bundle_id;
      showShadow();
      card.done.className = "done shadow";
      card.done.textContent = d.bundle_id
        ? "Running in shadow (attached by " + d.actor + "): logged requests are predicted by it too; its predictions are logged, never returned."
        : "Shadow stopped: " + short(card.c.bundle_id) + " no longer predicts; what it logged is kept.";
      if (shadow.panel) loadSincePromotion(shadow.panel, mine);
    } catch (err) {
      card.done.textContent = "";
      showAlert(card.alert, (stop ? "Stop shadow" : "Run in shadow") + " failed — " + describe(err));
    } finally {
      for (const b of card.buttons) b.disabled = false;
    }
  }

  function reportLink(cutoff) {
    const link = h("a", { href: "#report-" + cutoff, class: "meta" }, "evaluation report");
    link.addEventListener("click", () => openReport(cutoff));
    return link;
  }

  function reportDetails(cutoff, names, open) {
    const body = h("div", {});
    const who = names === null ? "" : names.length ? " — candidates " + names.join(", ") : " — production";
    const details = h("details", { class: "report", id: "report-" + cutoff },
      h("summary", {}, "Evaluation report, cutoff " + cutoff + who +
        ", with the baselines (and production, where comparable) on this holdout"),
      body);
    let loaded = false;
    details.addEventListener("toggle", () => {
      if (details.open && !loaded) {
        loaded = true;
        loadReport(cutoff, body);
      }
    });
    if (open) details.open = true;
    return details;
  }

  async function loadReport(cutoff, body) {
    body.replaceChildren(h("p", { class: "muted" }, "Loading the report…"));
    try {
      const resp = await api("GET", projectApi + "/reports/" + encodeURIComponent(cutoff), undefined, "text/html");
      const text = await resp.text();
      // No scripts in the frame; same origin only so that the page can size it to its content.
      const frame = h("iframe", {
        class: "report-frame", title: "Evaluation report, cutoff " + cutoff,
        sandbox: "allow-same-origin", referrerpolicy: "no-referrer",
      });
      frame.addEventListener("load", () => fit(frame));
      frame.srcdoc = text;
      const open = h("button", { type: "button", class: "secondary" }, "Open in a new tab");
      open.addEventListener("click", () => {
        const url = URL.createObjectURL(new Blob([text], { type: "text/html" }));
        window.open(url, "_blank", "noopener");
        setTimeout(() => URL.revokeObjectURL(url), 60000);
      });
      body.replaceChildren(h("p", {}, open), frame);
    } catch (err) {
      body.replaceChildren(err.status === 404
        ? h("p", { class: "muted" }, "No evaluation report was found for cutoff " + cutoff + ".")
        : h("p", { class: "fail" }, "Could not load the report — " + describe(err)));
    }
  }

  function fit(frame) {
    try {
      const doc = frame.contentDocument;
      if (doc && doc.documentElement) frame.style.height = Math.min(doc.documentElement.scrollHeight + 24, 30000) + "px";
    } catch (e) {
      // leave the default height
    }
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("token");
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    try {
      sessionStorage.setItem(KEY, value);
    } catch (e) {
      showAlert($("alert"), "This browser refuses session storage; the token cannot be kept.");
      return;
    }
    load();
  });
  $("forget").addEventListener("click", () => {
    try {
      sessionStorage.removeItem(KEY);
    } catch (e) {
      // nothing stored
    }
    load();
  });
  load();
})();
