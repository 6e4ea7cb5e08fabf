// ScaiVault admin UI: a thin view over the public /v1 API, reached through /ui/api (the
// session's token never reaches this page). Every element is built with textContent, never
// innerHTML, so nothing the API returns is ever parsed as markup.

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const view = document.getElementById("view");
const state = { tenant: sessionStorage.getItem("tenant") || "", me: null };

// ------------------------------------------------------------------ API
class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (error && error.code) || "error";
    this.details = (error && error.details) || null;
    this.requestId = error && error.request_id;
  }
}

async function api(method, path, body) {
  const prefix = state.tenant ? `/v1/t/${encodeURIComponent(state.tenant)}` : "/v1";
  const headers = { "X-CSRF-Token": CSRF };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch("/ui/api" + prefix + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = res.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await res.json() : await res.text();
  if (res.status === 401 && data && data.error && data.error.message.includes("UI session")) {
    location.href = "/ui/login";
  }
  if (!res.ok) throw new ApiError(res.status, data && data.error);
  return data;
}

const enc = (path) => path.split("/").map(encodeURIComponent).join("/");
const qs = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
};
// one list envelope or another: the resource's own key, else `data`
const items = (resp, key) => (resp && (resp[key] || resp.data)) || [];

// ------------------------------------------------------------------ DOM
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function show(...nodes) {
  view.replaceChildren(...nodes);
  view.focus({ preventScroll: true });
}

function errorBox(err) {
  if (!(err instanceof ApiError)) return h("p", { class: "error", role: "alert" }, String(err));
  const title = err.status === 403 ? "403 — not allowed" : err.status === 404 ? "404 — not found" : `${err.status} — ${err.code}`;
  return h("div", { class: "error", role: "alert" },
    h("strong", {}, title), " ", err.message,
    err.requestId ? h("span", { class: "muted" }, ` (request ${err.requestId})`) : null);
}

function flash(container, err) {
  container.querySelectorAll(":scope > .error, :scope > .ok").forEach((n) => n.remove());
  container.prepend(err instanceof Node ? err : errorBox(err));
}

const ok = (text) => h("p", { class: "ok", role: "status" }, text);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

function table(headers, rows) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted" }, "Nothing here."))));
}

async function guarded(render) {
  try {
    await render();
  } catch (err) {
    show(errorBox(err));
  }
}

async function copy(text, button) {
  await navigator.clipboard.writeText(text);
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => (button.textContent = label), 1200);
}

// ------------------------------------------------------------------ secrets
async function secretsPage(params) {
  const prefix = params.get("prefix") || "";
  const tag = params.get("tag") || "";
  const search = h("form", { class: "bar", onsubmit: (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    location.hash = "#/secrets" + qs({ prefix: f.get("prefix"), tag: f.get("tag") });
  } },
    h("label", { for: "prefix" }, "Prefix"), h("input", { id: "prefix", name: "prefix", value: prefix, placeholder: "app/prod/" }),
    h("label", { for: "tag" }, "Tag"), h("input", { id: "tag", name: "tag", value: tag }),
    h("button", { type: "submit" }, "Search"),
    h("a", { class: "button primary", href: "#/secret-new" + qs({ prefix }) }, "New secret"));
  const crumbs = h("nav", { class: "crumbs", "aria-label": "Folder" }, h("a", { href: "#/secrets" }, "root"));
  let acc = "";
  for (const part of prefix.split("/").filter(Boolean)) {
    acc += part + "/";
    crumbs.append(" / ", h("a", { href: "#/secrets" + qs({ prefix: acc }) }, part));
  }
  const body = h("tbody");
  const more = h("button", { hidden: true }, "Load more");
  const box = h("section", {}, h("h1", {}, "Secrets"), search, crumbs,
    h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Type", "Version", "Updated", "Expires"].map((t) => h("th", { scope: "col" }, t)))), body), more);
  show(box);
  let cursor = null;
  const load = async () => {
    try {
      const page = await api("GET", "/secrets" + qs({ prefix, delimiter: "/", tag, limit: 50, cursor }));
      for (const folder of page.folders || []) {
        body.append(h("tr", {}, h("td", {}, h("a", { href: "#/secrets" + qs({ prefix: folder }) }, "📁 " + folder.slice(prefix.length))),
          h("td", { class: "muted" }, "folder"), h("td"), h("td"), h("td")));
      }
      for (const s of items(page, "secrets")) {
        body.append(h("tr", {}, h("td", {}, h("a", { href: "#/secret/" + enc(s.path) }, s.path.slice(prefix.length))),
          h("td", {}, s.secret_type), h("td", {}, s.version), h("td", {}, when(s.updated_at)), h("td", {}, when(s.expires_at))));
      }
      if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No secrets here.")));
      cursor = page.cursor;
      more.hidden = !page.has_more;
    } catch (err) {
      flash(box, err);
    }
  };
  more.addEventListener("click", load);
  await load();
}

function kvEditor(data) {
  const rows = h("tbody");
  const addRow = (k = "", v = "") => rows.append(h("tr", {},
    h("td", {}, h("input", { "aria-label": "key", class: "k", value: k })),
    h("td", {}, h("input", { "aria-label": "value", class: "v", type: "password", autocomplete: "off", value: typeof v === "string" ? v : JSON.stringify(v) })),
    h("td", {}, h("button", { type: "button", onclick: (e) => e.target.closest("tr").remove() }, "Remove"))));
  for (const [k, v] of Object.entries(data || {})) addRow(k, v);
  if (!rows.children.length) addRow();
  const json = h("textarea", { rows: 10, class: "json", "aria-label": "JSON", hidden: true, spellcheck: "false" });
  const kvTable = h("table", { class: "kv" }, h("thead", {}, h("tr", {}, h("th", {}, "Key"), h("th", {}, "Value"), h("th"))), rows);
  const addBtn = h("button", { type: "button", onclick: () => addRow() }, "Add row");
  const toggle = h("button", { type: "button" }, "Edit as JSON");
  const editor = h("div", { class: "editor" }, kvTable, addBtn, json, toggle);
  const read = () => {
    if (!json.hidden) return JSON.parse(json.value || "{}");
    const out = {};
    for (const tr of rows.children) {
      const k = tr.querySelector(".k").value.trim();
      if (k) out[k] = tr.querySelector(".v").value;
    }
    return out;
  };
  toggle.addEventListener("click", () => {
    if (json.hidden) {
      json.value = JSON.stringify(read(), null, 2);
      json.hidden = false; kvTable.hidden = true; addBtn.hidden = true; toggle.textContent = "Edit as rows";
    } else {
      const data = read();
      rows.replaceChildren();
      for (const [k, v] of Object.entries(data)) addRow(k, v);
      json.hidden = true; kvTable.hidden = false; addBtn.hidden = false; toggle.textContent = "Edit as JSON";
    }
  });
  return { editor, read };
}

async function newSecretPage(params) {
  const { editor, read } = kvEditor({});
  const form = h("form", { class: "card" },
    h("h1", {}, "New secret"),
    h("label", { for: "path" }, "Path"), h("input", { id: "path", name: "path", required: true, value: params.get("prefix") || "" }),
    h("label", { for: "secret_type" }, "Type"),
    h("select", { id: "secret_type", name: "secret_type" }, ["kv", "json", "api_key", "certificate", "ssh_key"].map((t) => h("option", {}, t))),
    h("label", { for: "description" }, "Description"), h("input", { id: "description", name: "description" }),
    h("label", { for: "tags" }, "Tags (comma separated)"), h("input", { id: "tags", name: "tags" }),
    h("fieldset", {}, h("legend", {}, "Data"), editor),
    h("button", { type: "submit", class: "primary" }, "Create"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const path = String(f.get("path")).replace(/^\/+|\/+$/g, "");
    const metadata = {};
    if (f.get("description")) metadata.description = f.get("description");
    const tags = String(f.get("tags") || "").split(",").map((t) => t.trim()).filter(Boolean);
    if (tags.length) metadata.tags = tags;
    try {
      await api("PUT", "/secrets/" + enc(path), { data: read(), secret_type: f.get("secret_type"), metadata, options: { cas: 0 } });
      location.hash = "#/secret/" + enc(path);
    } catch (err) {
      flash(form, err);
    }
  });
  show(form);
}

async function secretPage(path) {
  const meta = await api("GET", "/secrets/" + enc(path) + ":metadata");
  const versions = await api("GET", "/secrets/" + enc(path) + ":versions");
  const box = h("section");
  const valueBox = h("div", { class: "card", id: "value" }, h("p", { class: "muted" }, "The value is hidden. Revealing it is an audited read."));
  const reveal = async (version) => {
    const secret = await api("GET", "/secrets/" + enc(path) + qs({ version }));
    valueBox.replaceChildren(h("h2", {}, `Version ${secret.version}`), table(["Key", "Value", ""],
      Object.entries(secret.data).map(([k, v]) => {
        const text = typeof v === "string" ? v : JSON.stringify(v);
        return h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, h("code", { class: "value" }, text)),
          h("td", {}, h("button", { onclick: (e) => copy(text, e.target) }, "Copy")));
      })));
    return secret;
  };
  const act = (fn) => async (e) => {
    try { await fn(e); } catch (err) { flash(box, err); }
  };
  const actions = h("div", { class: "bar" },
    meta.deleted
      ? h("button", { onclick: act(async () => { await api("POST", "/secrets/" + enc(path) + ":restore"); route(); }) }, "Restore secret")
      : [h("button", { class: "primary", onclick: act(() => reveal()) }, "Reveal"),
         h("button", { onclick: act(() => editSecret(path, meta.version)) }, "Edit"),
         h("button", { class: "danger", onclick: act(async () => {
           if (!confirm(`Delete ${path}? It can be restored until the retention ends.`)) return;
           await api("DELETE", "/secrets/" + enc(path)); route();
         }) }, "Delete")]);
  const tags = (meta.metadata && meta.metadata.tags) || [];
  const facts = h("dl", { class: "facts" },
    h("dt", {}, "Type"), h("dd", {}, meta.secret_type),
    h("dt", {}, "Current version"), h("dd", {}, meta.version),
    h("dt", {}, "Description"), h("dd", {}, (meta.metadata && meta.metadata.description) || "—"),
    h("dt", {}, "Tags"), h("dd", {}, tags.length ? tags.join(", ") : "—"),
    h("dt", {}, "Created"), h("dd", {}, when(meta.created_at)),
    h("dt", {}, "Updated"), h("dd", {}, when(meta.updated_at)),
    h("dt", {}, "Expires"), h("dd", {}, when(meta.expires_at)),
    h("dt", {}, "Last read"), h("dd", {}, when(meta.last_accessed_at)),
    meta.deleted ? [h("dt", {}, "Deleted"), h("dd", {}, `yes, restorable until ${when(meta.recoverable_until)}`)] : null);
  const pick = h("form", { class: "bar", onsubmit: act(async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    await compare(path, Number(f.get("a")), Number(f.get("b")), valueBox);
  }) });
  const live = versions.versions.filter((v) => v.state === "active").map((v) => v.version);
  pick.append(h("label", { for: "cmp-a" }, "Compare version"), h("select", { id: "cmp-a", name: "a" }, live.map((v, i) => h("option", { selected: i === 1 }, v))),
    h("label", { for: "cmp-b" }, "with"), h("select", { id: "cmp-b", name: "b" }, live.map((v, i) => h("option", { selected: i === 0 }, v))),
    h("button", { type: "submit" }, "Compare keys"));
  const vrows = versions.versions.map((v) => h("tr", {},
    h("td", {}, v.version, v.current ? " (current)" : ""), h("td", {}, v.state), h("td", {}, when(v.created_at)), h("td", {}, v.created_by || "—"),
    h("td", {}, v.state === "active" ? [
      h("button", { onclick: act(() => reveal(v.version)) }, "View"),
      v.current ? null : h("button", { onclick: act(async () => {
        const old = await api("GET", "/secrets/" + enc(path) + qs({ version: v.version }));
        await api("PUT", "/secrets/" + enc(path), { data: old.data, options: { cas: versions.current_version } });
        route();
      }) }, "Restore"),
      h("button", { class: "danger", onclick: act(async () => {
        if (!confirm(`Destroy version ${v.version} for good?`)) return;
        await api("POST", "/secrets/" + enc(path) + ":destroy", { versions: [v.version] }); route();
      }) }, "Destroy")] : "—")));
  box.append(h("h1", {}, path), actions, facts, valueBox,
    h("h2", {}, "Versions"), live.length > 1 ? pick : null, table(["Version", "State", "Created", "By", ""], vrows));
  show(box);
}

async function compare(path, a, b, into) {
  const [left, right] = await Promise.all([a, b].map((version) => api("GET", "/secrets/" + enc(path) + qs({ version }))));
  const keys = [...new Set([...Object.keys(left.data), ...Object.keys(right.data)])].sort();
  const status = (k) => !(k in left.data) ? "added" : !(k in right.data) ? "removed"
    : JSON.stringify(left.data[k]) === JSON.stringify(right.data[k]) ? "unchanged" : "changed";
  into.replaceChildren(h("h2", {}, `Keys of version ${a} against version ${b}`),
    table(["Key", `In ${b} compared with ${a}`], keys.map((k) => h("tr", { class: "diff-" + status(k) }, h("th", { scope: "row" }, k), h("td", {}, status(k))))));
}

async function editSecret(path, version) {
  const secret = await api("GET", "/secrets/" + enc(path));
  const { editor, read } = kvEditor(secret.data);
  const form = h("form", { class: "card" }, h("h1", {}, `Edit ${path}`),
    h("p", { class: "muted" }, `Saving writes version ${secret.version + 1}, only if nobody saved since version ${secret.version}.`),
    editor, h("div", { class: "bar" }, h("button", { type: "submit", class: "primary" }, "Save"),
      h("a", { class: "button", href: "#/secret/" + enc(path) }, "Cancel")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("PUT", "/secrets/" + enc(path), { data: read(), options: { cas: secret.version } });
      location.hash = "#/secret/" + enc(path);
      route();
    } catch (err) {
      if (err.code === "version_conflict") {
        flash(form, h("p", { class: "error", role: "alert" }, "Someone saved a newer version while you edited. Reload to see it; your changes were not saved."));
      } else flash(form, err);
    }
  });
  show(form);
}

// ------------------------------------------------------------------ policies
const PERMISSIONS = ["read", "write", "delete", "list", "rotate", "admin"];

async function policiesPage() {
  const page = await api("GET", "/policies" + qs({ limit: 200 }));
  show(h("section", {}, h("h1", {}, "Policies"),
    h("div", { class: "bar" }, h("a", { class: "button primary", href: "#/policy-new" }, "New policy")),
    table(["Name", "Description", "Rules", "Id"], items(page, "policies").map((p) => h("tr", {},
      h("td", {}, h("a", { href: "#/policy/" + encodeURIComponent(p.id) }, p.name)), h("td", {}, p.description || ""),
      h("td", {}, (p.rules || []).length), h("td", { class: "muted" }, p.id))))));
}

function ruleRow(rule = { path_pattern: "", permissions: ["read"], effect: "allow" }) {
  const id = Math.random().toString(36).slice(2);
  return h("fieldset", { class: "rule" }, h("legend", {}, "Rule"),
    h("label", { for: "pp-" + id }, "Path pattern"), h("input", { id: "pp-" + id, class: "path_pattern", value: rule.path_pattern, required: true, placeholder: "app/prod/**" }),
    h("div", { class: "perms" }, PERMISSIONS.map((p) => h("label", {}, h("input", { type: "checkbox", value: p, checked: (rule.permissions || []).includes(p) }), " ", p))),
    h("label", { for: "ef-" + id }, "Effect"),
    h("select", { id: "ef-" + id, class: "effect" }, ["allow", "deny"].map((e) => h("option", { selected: (rule.effect || "allow") === e }, e))),
    h("label", { for: "cd-" + id }, "Conditions (JSON, optional)"),
    h("textarea", { id: "cd-" + id, class: "conditions", rows: 2, spellcheck: "false" }, rule.conditions ? JSON.stringify(rule.conditions) : ""),
    h("button", { type: "button", onclick: (e) => e.target.closest("fieldset").remove() }, "Remove rule"));
}

function readRules(form) {
  return [...form.querySelectorAll("fieldset.rule")].map((fs) => {
    const rule = { path_pattern: fs.querySelector(".path_pattern").value.trim(),
      permissions: [...fs.querySelectorAll(".perms input:checked")].map((i) => i.value),
      effect: fs.querySelector(".effect").value };
    const cond = fs.querySelector(".conditions").value.trim();
    if (cond) rule.conditions = JSON.parse(cond);
    return rule;
  });
}

function policyForm(policy, onSave) {
  const rules = h("div", { class: "rules" }, (policy.rules && policy.rules.length ? policy.rules : [undefined]).map((r) => ruleRow(r)));
  const form = h("form", { class: "card" },
    h("label", { for: "pname" }, "Name"), h("input", { id: "pname", name: "name", value: policy.name || "", required: true }),
    h("label", { for: "pdesc" }, "Description"), h("input", { id: "pdesc", name: "description", value: policy.description || "" }),
    h("details", { class: "help" }, h("summary", {}, "Glob help"),
      h("ul", {}, h("li", {}, h("code", {}, "*"), " one path segment (or part of one)"), h("li", {}, h("code", {}, "**"), " any depth"),
        h("li", {}, h("code", {}, "?"), " one character"), h("li", {}, "A matching deny rule always wins."))),
    rules, h("div", { class: "bar" }, h("button", { type: "button", onclick: () => rules.append(ruleRow()) }, "Add rule"),
      h("button", { type: "submit", class: "primary" }, "Save policy")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      await onSave({ name: f.get("name"), description: f.get("description") || undefined, rules: readRules(form) });
    } catch (err) {
      flash(form, err);
    }
  });
  return form;
}

async function newPolicyPage() {
  show(h("section", {}, h("h1", {}, "New policy"), policyForm({}, async (body) => {
    const created = await api("POST", "/policies", body);
    location.hash = "#/policy/" + encodeURIComponent(created.id);
  })));
}

async function policyPage(id) {
  const policy = await api("GET", "/policies/" + encodeURIComponent(id));
  const bindings = await api("GET", "/policies/" + encodeURIComponent(id) + "/bindings");
  const box = h("section");
  const form = policyForm(policy, async (body) => {
    await api("PUT", "/policies/" + encodeURIComponent(id), body);
    flash(form, ok("Saved."));
  });
  const bindForm = h("form", { class: "bar", onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      await api("POST", "/policies/" + encodeURIComponent(id) + "/bindings", { identity_type: f.get("identity_type"), identity_id: f.get("identity_id") });
      route();
    } catch (err) { flash(box, err); }
  } },
    h("label", { for: "btype" }, "Identity type"),
    h("select", { id: "btype", name: "identity_type" }, ["service_account", "user", "group"].map((t) => h("option", {}, t))),
    h("label", { for: "bid" }, "Identity"), h("input", { id: "bid", name: "identity_id", required: true, placeholder: "sa:api" }),
    h("button", { type: "submit" }, "Bind"));
  const rows = items(bindings, "bindings").map((b) => h("tr", {}, h("td", {}, b.identity_type), h("td", {}, b.identity_id), h("td", {}, when(b.created_at)),
    h("td", {}, h("button", { class: "danger", onclick: async () => {
      try { await api("DELETE", `/policies/${encodeURIComponent(id)}/bindings/${encodeURIComponent(b.id)}`); route(); } catch (err) { flash(box, err); }
    } }, "Remove"))));
  box.append(h("h1", {}, `Policy ${policy.name}`), form, h("h2", {}, "Bindings"), bindForm, table(["Type", "Identity", "Since", ""], rows),
    h("div", { class: "bar" }, h("button", { class: "danger", onclick: async () => {
      if (!confirm(`Delete policy ${policy.name} and its bindings?`)) return;
      try { await api("DELETE", "/policies/" + encodeURIComponent(id) + "?force=true"); location.hash = "#/policies"; } catch (err) { flash(box, err); }
    } }, "Delete policy")));
  show(box);
}

async function policyTestPage() {
  const result = h("div", { id: "test-result" });
  const form = h("form", { class: "card" }, h("h1", {}, "Policy test"),
    h("p", { class: "muted" }, "Can an identity do this on a path? The answer names the rule that decided."),
    h("label", { for: "tid" }, "Identity (empty: yourself)"), h("input", { id: "tid", name: "identity_id", placeholder: "sa:api" }),
    h("label", { for: "tpath" }, "Path"), h("input", { id: "tpath", name: "path", required: true, placeholder: "prod/db" }),
    h("label", { for: "tperm" }, "Permission"), h("select", { id: "tperm", name: "permission" }, PERMISSIONS.map((p) => h("option", {}, p))),
    h("button", { type: "submit", class: "primary" }, "Test"), result);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { path: f.get("path"), permission: f.get("permission") };
    if (f.get("identity_id")) body.identity_id = f.get("identity_id");
    try {
      const r = await api("POST", "/policies/test", body);
      const d = r.decision || {};
      const rule = d.matched_rule;
      result.replaceChildren(
        h("p", { class: r.allowed ? "ok" : "error", role: "status" }, r.allowed ? "Allowed" : "Denied",
          d.reason ? ` — ${d.reason}` : "", d.via === "role" ? " (by an admin role)" : ""),
        rule ? h("dl", { class: "facts", id: "matched-rule" },
          h("dt", {}, "Policy"), h("dd", {}, h("a", { href: "#/policy/" + encodeURIComponent(rule.policy_id) }, rule.policy_name)),
          h("dt", {}, "Rule"), h("dd", {}, `#${rule.rule_index + 1}: ${rule.effect} ${rule.path_pattern}`)) : null,
        d.failed_condition ? h("p", {}, "Failed condition: ", JSON.stringify(d.failed_condition)) : null);
    } catch (err) {
      result.replaceChildren(errorBox(err));
    }
  });
  show(form);
}

// ------------------------------------------------------------------ personal tokens
async function tokensPage() {
  const list = await api("GET", "/auth/tokens");
  const box = h("section", {}, h("h1", {}, "Personal tokens"));
  const scopes = (state.me && state.me.scopes) || [];
  const form = h("form", { class: "card" }, h("h2", {}, "Create a token"),
    h("label", { for: "tname" }, "Name"), h("input", { id: "tname", name: "name", required: true }),
    h("fieldset", {}, h("legend", {}, "Scopes (at most your own)"),
      h("div", { class: "perms" }, scopes.map((s) => h("label", {}, h("input", { type: "checkbox", name: "scopes", value: s }), " ", s)))),
    h("label", { for: "tlife" }, "Lifetime"),
    h("select", { id: "tlife", name: "expires_in" }, ["1d", "7d", "30d", "90d"].map((d) => h("option", { selected: d === "30d" }, d))),
    h("button", { type: "submit", class: "primary" }, "Create"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    try {
      const created = await api("POST", "/auth/tokens", { name: f.get("name"), scopes: f.getAll("scopes"), expires_in: f.get("expires_in") });
      const shown = h("div", { class: "card once", role: "status" }, h("h2", {}, "Copy your token now"),
        h("p", {}, "It is shown this once and cannot be read again."), h("code", { class: "value token" }, created.token),
        h("button", { onclick: (ev) => copy(created.token, ev.target) }, "Copy"),
        h("button", { onclick: () => route() }, "Done"));
      show(shown);
    } catch (err) { flash(form, err); }
  });
  const rows = items(list, "tokens").map((t) => h("tr", {}, h("td", {}, t.name), h("td", {}, (t.scopes || []).join(" ")),
    h("td", {}, when(t.created_at)), h("td", {}, when(t.expires_at)), h("td", {}, t.revoked_at ? "revoked" : "active"),
    h("td", {}, t.revoked_at ? "" : h("button", { class: "danger", onclick: async () => {
      if (!confirm(`Revoke ${t.name}? Anything using it stops working.`)) return;
      try { await api("DELETE", "/auth/tokens/" + encodeURIComponent(t.id)); route(); } catch (err) { flash(box, err); }
    } }, "Revoke"))));
  box.append(form, table(["Name", "Scopes", "Created", "Expires", "State", ""], rows));
  show(box);
}

// ------------------------------------------------------------------ audit
const AUDIT_FILTERS = [["from", "From (RFC 3339)"], ["to", "To"], ["action", "Action"], ["identity_id", "Identity"],
  ["path_prefix", "Path prefix"], ["success", "Success (true/false)"], ["source_ip", "Source IP"], ["request_id", "Request id"]];

async function auditPage(params) {
  const filters = Object.fromEntries(AUDIT_FILTERS.map(([k]) => [k, params.get(k) || ""]));
  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    location.hash = "#/audit" + qs(Object.fromEntries(new FormData(e.target)));
  } }, AUDIT_FILTERS.map(([k, label]) => h("span", {}, h("label", { for: "af-" + k }, label), h("input", { id: "af-" + k, name: k, value: filters[k] }))),
    h("button", { type: "submit" }, "Filter"));
  const body = h("tbody");
  const more = h("button", { hidden: true }, "Load more");
  const verify = h("div", { class: "bar" },
    h("button", { onclick: async (e) => {
      try {
        const r = await api("GET", "/audit/verify");
        e.target.after(h("span", { class: r.valid === false || r.ok === false ? "error" : "ok", role: "status" }, " " + JSON.stringify(r)));
      } catch (err) { e.target.after(errorBox(err)); }
    } }, "Verify chain"),
    h("button", { onclick: async (e) => {
      try {
        const r = await api("POST", "/audit/export", { format: "jsonl", ...(filters.from ? { from: filters.from } : {}), ...(filters.to ? { to: filters.to } : {}) });
        e.target.after(h("span", { class: "ok", role: "status" }, ` export ${r.export_id} ${r.status}`));
      } catch (err) { e.target.after(errorBox(err)); }
    } }, "Export (JSON lines)"),
    h("a", { class: "button", href: "#/audit-exports" }, "Exports"));
  const box = h("section", {}, h("h1", {}, "Audit log"), form, verify,
    h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Action", "Identity", "Path", "Result", ""].map((t) => h("th", { scope: "col" }, t)))), body), more);
  show(box);
  let cursor = null;
  const load = async () => {
    try {
      const page = await api("GET", "/audit/logs" + qs({ ...filters, limit: 50, cursor }));
      for (const entry of items(page, "logs")) {
        const detail = h("tr", { hidden: true }, h("td", { colspan: 6 }, h("pre", {}, JSON.stringify(entry, null, 2))));
        body.append(h("tr", {}, h("td", {}, when(entry.timestamp)), h("td", {}, entry.action), h("td", {}, entry.identity_id || ""),
          h("td", {}, entry.secret_path || entry.resource || ""), h("td", {}, entry.success === false ? "failed" : "ok"),
          h("td", {}, h("button", { onclick: () => { detail.hidden = !detail.hidden; } }, "Details"))), detail);
      }
      cursor = page.cursor;
      more.hidden = !page.has_more;
    } catch (err) { flash(box, err); }
  };
  more.addEventListener("click", load);
  await load();
}

async function auditExportsPage() {
  const list = await api("GET", "/audit/exports");
  show(h("section", {}, h("h1", {}, "Audit exports"), table(["Id", "Status", "Format", "Created", "Files"],
    items(list, "exports").map((x) => h("tr", {}, h("td", {}, x.export_id || x.id), h("td", {}, x.status), h("td", {}, x.format || ""),
      h("td", {}, when(x.created_at)),
      h("td", {}, (x.files || []).map((f, i) => h("a", { href: `/ui/api/v1/audit/exports/${encodeURIComponent(x.export_id || x.id)}/files/${f.number || i + 1}` }, `file ${f.number || i + 1} `))))))));
}

// ------------------------------------------------------------------ admin resources (one pattern for all)
// A resource is described, not coded: where its list lives, which columns to show, and the
// actions of its detail page. Each page is one API call per user action.
const enc1 = encodeURIComponent;
const RESOURCES = {
  "rotation-policies": {
    group: "Lifecycle", title: "Rotation policies", list: "/rotation/policies", key: "data",
    columns: [["Name", (r) => r.name], ["Interval", (r) => r.interval], ["Auto-generate", (r) => String(r.auto_generate)],
      ["Secrets", (r) => r.secrets_count], ["Active", (r) => String(r.is_active)]],
    detail: (id) => `/rotation/policies/${enc1(id)}`,
    panels: [["History", (id) => `/rotation/policies/${enc1(id)}/history`, "data",
      [["Secret", (r) => r.secret_path], ["Status", (r) => r.status], ["Trigger", (r) => r.trigger],
        ["Versions", (r) => `${r.old_version ?? "—"} → ${r.new_version ?? "—"}`], ["Started", (r) => when(r.started_at)]]]],
    actions: [["Rotate attached secrets now", "POST", (id) => `/rotation/policies/${enc1(id)}/rotate`],
      ["Enable", "POST", (id) => `/rotation/policies/${enc1(id)}/enable`],
      ["Disable", "POST", (id) => `/rotation/policies/${enc1(id)}/disable`],
      ["Delete", "DELETE", (id) => `/rotation/policies/${enc1(id)}`, "danger"]],
  },
  "secret-policies": {
    group: "Lifecycle", title: "Secret policies (generators)", list: "/secret-policies", key: "secret_policies",
    columns: [["Name", (r) => r.name], ["Type", (r) => r.policy_type], ["Fields", (r) => (r.fields || []).map((f) => f.name).join(", ")]],
    detail: (id) => `/secret-policies/${enc1(id)}`,
    actions: [["Delete", "DELETE", (id) => `/secret-policies/${enc1(id)}`, "danger"]],
  },
  webhooks: {
    group: "Lifecycle", title: "Webhooks", list: "/webhooks", key: "webhooks",
    columns: [["Name", (r) => r.name], ["URL", (r) => r.url], ["Events", (r) => (r.events || []).join(", ")], ["Status", (r) => r.status]],
    detail: (id) => `/webhooks/${enc1(id)}`,
    panels: [["Deliveries", (id) => `/webhooks/${enc1(id)}/deliveries`, "deliveries",
      [["Event", (d) => d.event_type], ["Status", (d) => d.status], ["Attempts", (d) => d.attempts],
        ["Response", (d) => d.response_code ?? "—"], ["Duration ms", (d) => d.duration_ms ?? "—"], ["At", (d) => when(d.timestamp)]]]],
    actions: [["Send test event", "POST", (id) => `/webhooks/${enc1(id)}/test`],
      ["Delete", "DELETE", (id) => `/webhooks/${enc1(id)}`, "danger"]],
  },
  subscriptions: {
    group: "Lifecycle", title: "Subscriptions", list: "/subscriptions", key: "data",
    columns: [["Name", (r) => r.name || r.id], ["Delivery", (r) => r.delivery.type], ["Paths", (r) => (r.paths || []).join(", ")],
      ["Status", (r) => r.status]],
    detail: (id) => `/subscriptions/${enc1(id)}`,
    actions: [["Delete", "DELETE", (id) => `/subscriptions/${enc1(id)}`, "danger"]],
  },
  federation: {
    group: "Federation", title: "Federation backends", list: "/federation/backends", key: "backends",
    columns: [["Name", (r) => r.name], ["Type", (r) => r.type], ["Mode", (r) => r.mode], ["Status", (r) => r.status]],
    detail: (id) => `/federation/backends/${enc1(id)}`,
    panels: [
      ["Status", (id) => `/federation/backends/${enc1(id)}/status`],
      ["Conflicts", (id) => `/federation/backends/${enc1(id)}/conflicts`, "conflicts",
        [["Path", (c) => c.path], ["Remote path", (c) => c.remote_path], ["Reason", (c) => c.reason], ["Detected", (c) => when(c.detected_at)]]],
    ],
    actions: [["Sync now", "POST", (id) => `/federation/backends/${enc1(id)}/sync`],
      ["Delete", "DELETE", (id) => `/federation/backends/${enc1(id)}`, "danger"]],
  },
  "pki-cas": {
    group: "PKI", title: "Certificate authorities", list: "/pki/ca", key: "cas",
    columns: [["Name", (r) => r.name], ["Common name", (r) => r.common_name], ["Type", (r) => r.ca_type],
      ["Status", (r) => r.status], ["Valid until", (r) => when(r.valid_until)]],
    detail: (id) => `/pki/ca/${enc1(id)}`,
    actions: [["Regenerate CRL", "POST", (id) => `/pki/ca/${enc1(id)}/crl`],
      ["Revoke", "POST", (id) => `/pki/ca/${enc1(id)}/revoke`, "danger", { reason: "cessation_of_operation" }]],
  },
  "pki-roles": {
    group: "PKI", title: "Certificate roles", list: "/pki/roles", key: "roles", idOf: (r) => r.name,
    columns: [["Name", (r) => r.name], ["CA", (r) => r.ca_id], ["Allowed domains", (r) => (r.allowed_domains || []).join(", ")],
      ["Max TTL", (r) => r.max_ttl]],
    detail: (id) => `/pki/roles/${enc1(id)}`,
    actions: [["Delete", "DELETE", (id) => `/pki/roles/${enc1(id)}`, "danger"]],
  },
  "pki-certificates": {
    group: "PKI", title: "Certificates", list: "/pki/certificates", key: "certificates",
    columns: [["Common name", (r) => r.common_name], ["Serial", (r) => r.serial_number], ["Expires", (r) => when(r.expires_at)],
      ["Status", (r) => r.status || (r.revoked_at ? "revoked" : "valid")]],
    detail: (id) => `/pki/certificates/${enc1(id)}`,
    actions: [["Revoke", "POST", (id) => `/pki/certificates/${enc1(id)}/revoke`, "danger", { reason: "unspecified" }]],
  },
  "acme-orders": {
    group: "PKI", title: "ACME orders", list: "/pki/acme/orders", key: "orders",
    columns: [["Domains", (r) => (r.domains || []).join(", ")], ["Status", (r) => r.status], ["Created", (r) => when(r.created_at)]],
    detail: (id) => `/pki/acme/orders/${enc1(id)}`,
  },
  "acme-accounts": {
    group: "PKI", title: "ACME accounts", list: "/pki/acme/accounts", key: "accounts",
    columns: [["Name", (r) => r.name], ["Provider", (r) => r.provider], ["Status", (r) => r.status]],
    detail: (id) => `/pki/acme/accounts/${enc1(id)}`,
  },
  "dns-providers": {
    group: "PKI", title: "DNS providers", list: "/dns/providers", key: "providers",
    columns: [["Name", (r) => r.name], ["Type", (r) => r.type]],
    detail: (id) => `/dns/providers/${enc1(id)}`,
    actions: [["Delete", "DELETE", (id) => `/dns/providers/${enc1(id)}`, "danger"]],
  },
  "dynamic-engines": {
    group: "Dynamic", title: "Database engines", list: "/dynamic/engines", key: "engines", idOf: (r) => r.name,
    columns: [["Name", (r) => r.name], ["Plugin", (r) => (r.config && r.config.plugin) || r.plugin], ["Default TTL", (r) => r.default_ttl]],
    detail: (id) => `/dynamic/engines/${enc1(id)}`,
    panels: [["Health", (id) => `/dynamic/engines/${enc1(id)}/health`],
      ["Roles", (id) => `/dynamic/engines/${enc1(id)}/roles`, "roles",
        [["Role", (r) => r.name], ["Default TTL", (r) => r.default_ttl], ["Max TTL", (r) => r.max_ttl]]]],
    actions: [["Rotate root credentials", "POST", (id) => `/dynamic/engines/${enc1(id)}/rotate-root`],
      ["Delete", "DELETE", (id) => `/dynamic/engines/${enc1(id)}`, "danger"]],
  },
  leases: {
    group: "Dynamic", title: "Leases", list: "/leases", key: "leases",
    columns: [["Lease", (r) => r.id || r.lease_id], ["Engine", (r) => r.engine], ["Role", (r) => r.role], ["Expires", (r) => when(r.expires_at)]],
    idOf: (r) => r.id || r.lease_id,
    detail: (id) => `/leases/${enc1(id)}`,
    actions: [["Renew", "POST", (id) => `/leases/${enc1(id)}/renew`, undefined, {}],
      ["Revoke", "POST", (id) => `/leases/${enc1(id)}/revoke`, "danger"]],
  },
  "trust-rules": {
    group: "Token exchange", title: "Token exchange trust rules", list: "/auth/trust", key: "rules",
    columns: [["Name", (r) => r.name], ["Issuer", (r) => r.issuer], ["Identity", (r) => r.identity], ["TTL", (r) => r.ttl]],
    detail: (id) => `/auth/trust/${enc1(id)}`,
    actions: [["Delete", "DELETE", (id) => `/auth/trust/${enc1(id)}`, "danger"]],
  },
};

function groupTabs(name) {
  const group = RESOURCES[name].group;
  const siblings = Object.entries(RESOURCES).filter(([, r]) => r.group === group);
  if (siblings.length < 2) return null;
  return h("nav", { class: "bar tabs", "aria-label": group }, siblings.map(([key, r]) =>
    h("a", { href: `#/r/${key}`, "aria-current": key === name ? "page" : false }, r.title)));
}

async function resourceListPage(name) {
  const spec = RESOURCES[name];
  const idOf = spec.idOf || ((r) => r.id);
  const page = await api("GET", spec.list);
  show(h("section", {}, h("h1", {}, spec.title), groupTabs(name), table(spec.columns.map(([t]) => t),
    items(page, spec.key).map((r) => h("tr", {}, spec.columns.map(([, cell], i) => h("td", {},
      i === 0 ? h("a", { href: `#/r/${name}/${enc1(idOf(r))}` }, cell(r)) : cell(r))))))));
}

function facts(obj) {
  return h("dl", { class: "facts" }, Object.entries(obj).flatMap(([k, v]) =>
    [h("dt", {}, k), h("dd", {}, v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v))]));
}

async function resourceDetailPage(name, id) {
  const spec = RESOURCES[name];
  const row = await api("GET", spec.detail(id));
  const box = h("section", {}, h("h1", {}, `${spec.title}: ${row.name || row.common_name || id}`), groupTabs(name));
  box.append(h("div", { class: "bar" }, (spec.actions || []).map(([label, method, url, cls, body]) => h("button", { class: cls, onclick: async () => {
    if (cls === "danger" && !confirm(`${label} ${row.name || id}?`)) return;
    try {
      const result = await api(method, url(id), body);
      if (method === "DELETE") { location.hash = `#/r/${name}`; return; }
      flash(box, h("pre", { class: "ok", role: "status" }, `${label}: ${JSON.stringify(result, null, 2)}`));
    } catch (err) { flash(box, err); }
  } }, label))), facts(row));
  for (const [title, url, key, columns] of spec.panels || []) {
    try {
      const data = await api("GET", url(id));
      box.append(h("h2", {}, title), columns
        ? table(columns.map(([t]) => t), items(data, key).map((r) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(r))))))
        : facts(data));
    } catch (err) {
      box.append(h("h2", {}, title), errorBox(err));
    }
  }
  show(box);
}

// ------------------------------------------------------------------ tenant switcher and router
async function initIdentity() {
  state.me = await api("GET", "/auth/whoami");
  document.getElementById("whoami").textContent = state.me.display_name || state.me.identity_id;
  const roles = state.me.roles || [];
  if (!roles.includes("super_admin") && !roles.includes("partner_admin")) return;
  const select = document.getElementById("tenant-switch");
  try {
    const tenants = items(await api("GET", "/identity/tenants" + qs({ page_size: 200 })), "tenants")
      .filter((t) => t.id !== state.me.tenant_id);
    select.append(h("option", { value: "" }, `Home tenant (${state.me.tenant_id || "none"})`),
      ...tenants.map((t) => h("option", { value: t.id, selected: t.id === state.tenant }, `${t.name} (${t.id})`)));
    select.hidden = tenants.length === 0;
    select.addEventListener("change", () => {
      state.tenant = select.value;
      sessionStorage.setItem("tenant", state.tenant);
      route();
    });
  } catch (err) {
    select.hidden = true;
  }
}

const ROUTES = [
  [/^#\/secrets$/, (m, p) => secretsPage(p)],
  [/^#\/secret-new$/, (m, p) => newSecretPage(p)],
  [/^#\/secret\/(.+)$/, (m) => secretPage(m[1].split("/").map(decodeURIComponent).join("/"))],
  [/^#\/policies$/, () => policiesPage()],
  [/^#\/policy-new$/, () => newPolicyPage()],
  [/^#\/policy\/(.+)$/, (m) => policyPage(decodeURIComponent(m[1]))],
  [/^#\/policy-test$/, () => policyTestPage()],
  [/^#\/tokens$/, () => tokensPage()],
  [/^#\/audit$/, (m, p) => auditPage(p)],
  [/^#\/audit-exports$/, () => auditExportsPage()],
  [/^#\/r\/([a-z-]+)$/, (m) => resourceListPage(m[1])],
  [/^#\/r\/([a-z-]+)\/(.+)$/, (m) => resourceDetailPage(m[1], decodeURIComponent(m[2]))],
];

function route() {
  const [hashPath, query] = (location.hash || "#/secrets").split("?");
  const params = new URLSearchParams(query || "");
  const resource = RESOURCES[(hashPath.match(/^#\/r\/([a-z-]+)/) || [])[1]];
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.toggleAttribute("aria-current", resource ? a.dataset.nav === resource.group : hashPath.startsWith("#/" + a.dataset.nav));
  }
  for (const [re, render] of ROUTES) {
    const m = hashPath.match(re);
    if (m) return guarded(() => render(m, params));
  }
  show(h("p", {}, "No such page. ", h("a", { href: "#/secrets" }, "Secrets")));
}

window.addEventListener("hashchange", route);
guarded(async () => {
  await initIdentity();
  route();
});
