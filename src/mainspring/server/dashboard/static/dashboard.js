// Mainspring dashboard: live updates (server-sent events), the event editor, confirmations.
// Vanilla JavaScript, no dependencies.
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Re-fetch a fragment of this page and swap it in, whenever the server says runs changed.
  function liveRegion(container, fragmentUrl, onSwap) {
    const source = container.dataset.live;
    if (!source || !window.EventSource) return;
    let pending = false;
    let again = false;
    const indicator = document.getElementById("live-indicator");
    async function refresh() {
      if (pending) { again = true; return; }
      pending = true;
      try {
        const answer = await fetch(fragmentUrl(), { headers: { "x-requested-with": "fetch" }, credentials: "same-origin" });
        if (answer.ok) onSwap(await answer.text());
      } catch (e) { /* the next update tries again */ }
      pending = false;
      if (again) { again = false; refresh(); }
    }
    const stream = new EventSource(source);
    stream.addEventListener("runs", refresh);
    stream.addEventListener("open", () => indicator && indicator.classList.remove("off"));
    stream.addEventListener("error", () => indicator && indicator.classList.add("off"));
    window.addEventListener("beforeunload", () => stream.close());
  }

  function withFragment() {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    return url.toString();
  }

  // The runs list: new and changed rows appear without a reload.
  const runsTable = document.getElementById("runs-table");
  if (runsTable) {
    const body = document.getElementById("runs-body");
    // A new row is highlighted for a while, and stays so through the swaps that follow
    // (its run finishing a moment later swaps the rows again): when each run first appeared.
    const FRESH_MS = 2000;
    const appeared = new Map();
    liveRegion(runsTable, withFragment, (html) => {
      const known = new Set(Array.from(body.querySelectorAll("tr[data-run]"), (r) => r.dataset.run));
      body.innerHTML = html;
      const now = Date.now();
      body.querySelectorAll("tr[data-run]").forEach((row) => {
        const id = row.dataset.run;
        if (known.size && !known.has(id) && !appeared.has(id)) appeared.set(id, now);
        const since = appeared.has(id) ? now - appeared.get(id) : FRESH_MS;
        if (since < FRESH_MS) {
          row.classList.add("fresh");
          row.style.animationDelay = `-${since}ms`;  // the highlight goes on fading, not anew
        }
      });
    });
  }

  // A run: its page content follows the run until it finishes.
  const runLive = document.getElementById("run-live");
  if (runLive) {
    liveRegion(runLive, withFragment, (html) => {
      const open = new Map(Array.from(runLive.querySelectorAll("details[open]"), (d) => [d.id, d]));
      runLive.innerHTML = html;
      runLive.querySelectorAll("details[id]").forEach((d) => {
        const was = open.get(d.id);
        if (!was) return;
        // An opened step keeps the body it fetched while the step has recorded nothing new.
        const body = was.querySelector(".step-body[data-loaded]");
        const slot = d.querySelector(".step-body");
        if (body && slot && was.dataset.version === d.dataset.version) slot.replaceWith(body);
        d.open = true;
      });
    });

    // A step's attempts and output are fetched when its line is opened (the page lists
    // only its line: a run of thousands of steps would otherwise carry every output).
    const loadStep = (details) => {
      const body = details.querySelector(".step-body");
      if (!body || body.dataset.loaded) return;
      body.dataset.loaded = "1";
      fetch(details.dataset.body, { credentials: "same-origin", headers: { "x-requested-with": "fetch" } })
        .then((answer) => (answer.ok ? answer.text() : Promise.reject(new Error(String(answer.status)))))
        .then((text) => { body.innerHTML = text; })
        .catch((err) => {
          delete body.dataset.loaded;
          body.textContent = "Could not load this step (" + err.message + "): close it and open it again.";
        });
    };
    document.addEventListener("toggle", (e) => {
      const d = e.target;
      if (d instanceof HTMLDetailsElement && d.open && d.dataset.body) loadStep(d);
    }, true);  // toggle does not bubble: caught on its way down
    // A link to a step (a timeline bar, a failed step elsewhere) opens it.
    const openTarget = () => {
      const id = decodeURIComponent(window.location.hash.slice(1));
      const target = id && document.getElementById(id);
      if (target instanceof HTMLDetailsElement) target.open = true;
    };
    window.addEventListener("hashchange", openTarget);
    openTarget();
  }

  // Forms that ask first.
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) e.preventDefault();
  });

  // JSON textareas: checked before the form goes.
  document.querySelectorAll("form.json-form").forEach((form) => {
    form.addEventListener("submit", (e) => {
      const area = form.querySelector("textarea[data-json]");
      const problem = form.querySelector(".json-problem");
      try {
        const value = JSON.parse(area.value || "{}");
        if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("the payload must be a JSON object");
        problem.hidden = true;
      } catch (err) {
        e.preventDefault();
        problem.textContent = "Not valid: " + err.message;
        problem.hidden = false;
      }
    });
  });

  // The event editor: validated here, sent to the server's intake, its answer shown in place.
  const sendForm = document.getElementById("send-form");
  if (sendForm) {
    const area = document.getElementById("event-json");
    const problem = document.getElementById("send-problem");
    const result = document.getElementById("send-result");
    const button = document.getElementById("send-button");
    const show = (node, text) => { node.textContent = text; node.hidden = false; };
    area.addEventListener("input", () => {
      try { JSON.parse(area.value); problem.hidden = true; } catch (err) { show(problem, "Not JSON yet: " + err.message); }
    });
    sendForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      problem.hidden = true;
      result.hidden = true;
      try { JSON.parse(area.value); } catch (err) { show(problem, "Not valid JSON: " + err.message); return; }
      button.disabled = true;
      try {
        const answer = await fetch("/events/send", {
          method: "POST",
          credentials: "same-origin",
          headers: { "content-type": "application/json", "x-csrf-token": csrf() },
          body: area.value,
        });
        let body = null;
        try { body = await answer.json(); } catch (err) { body = null; }
        if (!answer.ok) {
          show(problem, "The server refused it (" + answer.status + "): " + ((body && body.error) || answer.statusText));
        } else {
          const runs = body.runs || [];
          const started = runs.length ? "started " + runs.map((r) => r.function).join(", ") : "no function is triggered by this event";
          show(result, "Sent " + body.ids.length + " event" + (body.ids.length === 1 ? "" : "s") + ": " + started + ".");
          const list = document.createElement("span");
          runs.forEach((r) => {
            const link = document.createElement("a");
            link.href = "/runs/" + r.id;
            link.textContent = " open run";
            list.appendChild(link);
          });
          result.appendChild(list);
        }
      } catch (err) {
        show(problem, "Could not reach the server: " + err.message);
      }
      button.disabled = false;
    });
  }
})();
