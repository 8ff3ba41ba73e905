// The models page: what the user may call (/v1/models), its facts (/api/tags), what is loaded
// (/api/ps); for model managers, aliases and imports through /admin/models.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);

  function bytes(count) {
    for (const [unit, scale] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) {
      if (count >= scale) return `${(count / scale).toFixed(1)} ${unit}`;
    }
    return count ? `${count} B` : "";
  }

  function failure(error) {
    return error && error.message ? error.message : "The request failed.";
  }

  function bare(name) {
    return name.endsWith(":latest") ? name.slice(0, -7) : name;
  }

  // Each cell carries its column's name, shown beside it when narrow screens stack the rows.
  function labelCells(table) {
    const names = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
    for (const row of table.tBodies[0].rows) {
      [...row.cells].forEach((cell, i) => { cell.dataset.label = names[i]; });
    }
  }

  function loadedText(running) {
    if (!running) return "no";
    const until = running.expires_at.startsWith("9999") ? "always"
      : `until ${new Date(running.expires_at).toLocaleTimeString()}`;
    const memory = running.size ? [`${bytes(running.size)} of memory`] : [];
    return ["yes", ...memory, `context ${running.context_length}`, until].join(", ");
  }

  function modelRow(model, facts, running) {
    const row = document.createElement("tr");
    const head = document.createElement("th");
    head.scope = "row";
    head.textContent = model.id;
    row.append(head);
    const details = (facts && facts.details) || {};
    const parameters = details.parameter_size === "0" ? "" : details.parameter_size || "";
    const values = [model.alias_of || "", details.family || "", parameters,
      details.quantization_level || "", bytes(facts ? facts.size : 0), loadedText(running)];
    for (const value of values) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    return row;
  }

  async function loadModels() {
    const [models, tags, ps] = await Promise.all([
      inhouse.api("/v1/models"), inhouse.api("/api/tags"), inhouse.api("/api/ps"),
    ]);
    const facts = new Map(tags.models.map((m) => [bare(m.name), m]));
    const running = new Map(ps.models.map((m) => [bare(m.name), m]));
    const rows = models.data.map((m) => modelRow(m, facts.get(m.id),
      running.get(m.alias_of || m.id) || running.get(m.id)));
    const table = byId("models");
    table.tBodies[0].replaceChildren(...rows);
    labelCells(table);
    const memory = ps.models.reduce((total, m) => total + m.size, 0);
    const total = memory ? `, ${bytes(memory)} of memory in all` : "";
    byId("memory-total").textContent = ps.models.length
      ? `${ps.models.length} loaded${total}.` : "No model is loaded.";
    return models.data;
  }

  // ----- managing the store ------------------------------------------------------------------

  function aliasItem(alias, target) {
    const item = document.createElement("li");
    const text = document.createElement("span");
    text.textContent = `${alias} → ${target}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove alias ${alias}`);
    remove.addEventListener("click", () => removeAlias(alias));
    item.append(text, remove);
    return item;
  }

  function fillSelect(select, values) {
    select.replaceChildren(...values.map((value) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = value;
      return option;
    }));
  }

  function showImport(store) {
    const note = byId("import-note");
    const form = byId("import-form");
    form.hidden = true;
    if (!store.store) {
      note.textContent = "This server serves one model file (inhouse serve --model): it has no "
        + "model store to import into or to alias in.";
    } else if (!store.import_dir) {
      note.textContent = "Imports from the web app are off. Set models.import_dir to a folder "
        + "on the server, or run `inhouse models import FILE` there.";
    } else if (!store.importable.length) {
      note.textContent = `No .gguf file lies in ${store.import_dir} on the server.`;
    } else {
      note.textContent = `Files in ${store.import_dir} on the server. An import checks the file `
        + "and copies it into the store: a large model takes minutes.";
      fillSelect(byId("import-file"), store.importable.map((f) => f.file));
      form.hidden = false;
    }
  }

  async function loadStore(models) {
    const store = await inhouse.api("/admin/models/store");
    const aliases = Object.entries(store.aliases);
    byId("alias-list").replaceChildren(...aliases.map(([a, t]) => aliasItem(a, t)));
    fillSelect(byId("alias-target"), models.map((m) => m.id));
    byId("alias-form").hidden = !store.store;
    showImport(store);
  }

  async function refresh() {
    const status = byId("models-status");
    try {
      const models = await loadModels();
      if (byId("manage-aliases")) await loadStore(models);
    } catch (error) {
      inhouse.announce(status, failure(error), true);
    }
  }

  async function change(statusId, path, options, done) {
    const status = byId(statusId);
    try {
      await inhouse.api(path, options);
      inhouse.announce(status, done);
      await refresh();
      return true;
    } catch (error) {
      inhouse.announce(status, failure(error), true);
      return false;
    }
  }

  function removeAlias(alias) {
    const path = `/admin/models/aliases/${encodeURIComponent(alias)}`;
    change("alias-status", path, { method: "DELETE" }, `Removed the alias ${alias}.`);
  }

  async function setAlias(event) {
    event.preventDefault();
    const data = new FormData(event.target);
    const alias = String(data.get("alias") || "").trim();
    if (!alias) {
      inhouse.announce(byId("alias-status"), "Give the alias a name.", true);
      return;
    }
    const json = { alias, target: data.get("target") };
    const done = `${alias} now points to ${json.target}.`;
    const path = "/admin/models/aliases";
    if (await change("alias-status", path, { method: "POST", json }, done)) event.target.reset();
  }

  async function importModel(event) {
    event.preventDefault();
    const form = event.target;
    const data = new FormData(form);
    const json = { file: data.get("file") };
    if (String(data.get("name") || "").trim()) json.name = String(data.get("name")).trim();
    const button = form.querySelector("button");
    button.disabled = true;
    inhouse.announce(byId("import-status"), `Importing ${json.file}…`);
    const done = `Imported ${json.file}.`;
    await change("import-status", "/admin/models/import", { method: "POST", json }, done);
    button.disabled = false;
  }

  document.addEventListener("DOMContentLoaded", () => {
    refresh();
    const aliasForm = byId("alias-form");
    if (aliasForm) aliasForm.addEventListener("submit", setAlias);
    const importForm = byId("import-form");
    if (importForm) importForm.addEventListener("submit", importModel);
  });
})();
