// Users and groups: lists from /admin/users, /admin/groups and /admin/keys; for directory
// writers, forms that change them through the same API (one call per action, then reload).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("directory");
  if (!root) return;
  const canWrite = root.dataset.canWrite === "true";
  const status = document.getElementById("directory-status");
  const error = document.getElementById("directory-error");
  const LIMITS = ["tokens_per_day", "tokens_per_month", "requests_per_minute"];
  const state = { users: [], groups: [], keys: [], user: null, group: null };
  const byId = (id) => document.getElementById(id);
  const path = (...parts) => parts.map(encodeURIComponent).join("/");

  function limitText(value) {
    return value === null ? "no limit" : value.toLocaleString();
  }

  function manageButton(kind, name, open) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = "Manage";
    button.setAttribute("aria-label", `Manage ${kind} ${name}`);
    button.addEventListener("click", () => open(name));
    return button;
  }

  function renderUsers() {
    const tbody = document.querySelector("#users-table tbody");
    if (!state.users.length) return inhouseKeys.emptyRow(tbody, 8, "No users.");
    tbody.replaceChildren(...state.users.map((user) => {
      const row = document.createElement("tr");
      inhouseKeys.cell(row, user.name);
      inhouseKeys.cell(row, user.role);
      inhouseKeys.cell(row, user.groups.join(", ") || "none");
      inhouseKeys.cell(row, user.disabled ? "Disabled" : "Active");
      LIMITS.forEach((field) => inhouseKeys.cell(row, limitText(user.limits[field])));
      if (canWrite) inhouseKeys.cell(row, "").append(manageButton("user", user.name, openUser));
      return row;
    }));
  }

  function renderGroups() {
    const tbody = document.querySelector("#groups-table tbody");
    if (!state.groups.length) return inhouseKeys.emptyRow(tbody, 7, "No groups yet.");
    tbody.replaceChildren(...state.groups.map((group) => {
      const row = document.createElement("tr");
      inhouseKeys.cell(row, group.name);
      inhouseKeys.cell(row, group.members.join(", ") || "none");
      inhouseKeys.cell(row, group.collections.join(", ") || "none");
      LIMITS.forEach((field) => inhouseKeys.cell(row, limitText(group.limits[field])));
      if (canWrite) inhouseKeys.cell(row, "").append(manageButton("group", group.name, openGroup));
      return row;
    }));
  }

  async function revokeKey(key) {
    await act(async () => {
      if (!(await inhouseKeys.revoke(key))) return null;
      return `Key ${inhouseKeys.label(key)} revoked.`;
    });
  }

  async function load() {
    const [users, groups, keys] = await Promise.all([
      inhouse.api("/admin/users"), inhouse.api("/admin/groups"), inhouse.api("/admin/keys"),
    ]);
    Object.assign(state, { users: users.users, groups: groups.groups, keys: keys.keys });
    renderUsers();
    renderGroups();
    inhouseKeys.renderRows(document.querySelector("#all-keys-table tbody"), state.keys, {
      showUser: true, onRevoke: canWrite ? revokeKey : null,
    });
    if (canWrite) {
      fillUser();
      fillGroup();
    }
  }

  // Run one change; announce its outcome (a message, or nothing when it was called off);
  // then show the directory as it now is.
  async function act(change) {
    inhouse.announce(error, "");
    inhouse.announce(status, "");
    try {
      const message = await change();
      if (message === null) return;
      await load();
      inhouse.announce(status, message);
    } catch (failure) {
      inhouse.announce(error, failure.message, true);
    }
  }

  load().catch((failure) => inhouse.announce(error, failure.message, true));
  if (!canWrite) return;

  // ----- forms: what writers may change ---------------------------------------------------

  function onSubmit(id, change) {
    const form = byId(id);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(() => change(new FormData(form), form));
    });
  }

  function limitsOf(data) {
    const json = {};
    LIMITS.forEach((field) => {
      const text = String(data.get(field) || "").trim();
      json[field] = text === "" ? null : Number(text);
    });
    return json;
  }

  function fillLimits(form, limits) {
    LIMITS.forEach((field) => {
      form.elements[field].value = limits[field] === null ? "" : String(limits[field]);
    });
  }

  function openEditor(id) {
    const editor = byId(id);
    editor.hidden = false;
    editor.querySelector("h3").focus();
  }

  document.querySelectorAll("[data-close-editor]").forEach((button) => {
    button.addEventListener("click", () => {
      byId(button.dataset.closeEditor).hidden = true;
      if (button.dataset.closeEditor === "user-editor") state.user = null;
      else state.group = null;
    });
  });

  // ----- users ----------------------------------------------------------------------------

  const userUrl = () => "/admin/users/" + path(state.user);
  const patchUser = (json) => inhouse.api(userUrl(), { method: "PATCH", json });

  function openUser(name) {
    state.user = name;
    fillUser();
    openEditor("user-editor");
  }

  // The editor shows the chosen user as last loaded (and closes once the user is gone).
  function fillUser() {
    const editor = byId("user-editor");
    const user = state.users.find((u) => u.name === state.user);
    if (!user) {
      editor.hidden = true;
      return;
    }
    editor.querySelector("[data-field=name]").textContent = user.name;
    byId("edit-user-role").value = user.role;
    fillLimits(byId("user-quota-form"), user.limits);
    byId("user-toggle-disabled").textContent = user.disabled ? "Enable user" : "Disable user";
  }

  onSubmit("add-user", async (data, form) => {
    const json = { name: String(data.get("name")).trim(), role: data.get("role") };
    if (data.get("password")) json.password = data.get("password");
    await inhouse.api("/admin/users", { method: "POST", json });
    form.reset();
    return `User ${json.name} added.`;
  });
  onSubmit("user-role-form", async (data) => {
    await patchUser({ role: data.get("role") });
    return `${state.user} is now ${data.get("role")}.`;
  });
  onSubmit("user-quota-form", async (data) => {
    await patchUser(limitsOf(data));
    return `Quotas of ${state.user} saved.`;
  });
  onSubmit("user-password-form", async (data, form) => {
    await patchUser({ password: data.get("password") });
    form.reset();
    return `Password of ${state.user} set; their open sessions were ended.`;
  });
  byId("user-toggle-disabled").addEventListener("click", () => act(async () => {
    const user = state.users.find((u) => u.name === state.user);
    const disable = !user.disabled;
    if (disable && !window.confirm(`Disable ${user.name}? Their sessions end and their keys stop working.`)) {
      return null;
    }
    await patchUser({ disabled: disable });
    return `${user.name} ${disable ? "disabled" : "enabled"}.`;
  }));
  byId("user-remove").addEventListener("click", () => act(async () => {
    const name = state.user;
    if (!window.confirm(`Remove the user ${name}? This cannot be undone.`)) return null;
    await inhouse.api(userUrl(), { method: "DELETE" });
    state.user = null;
    return `User ${name} removed.`;
  }));

  // ----- groups ---------------------------------------------------------------------------

  const groupUrl = (...more) => "/admin/groups/" + path(state.group, ...more);

  function openGroup(name) {
    state.group = name;
    fillGroup();
    openEditor("group-editor");
  }

  function itemWithButton(text, buttonLabel, buttonName, onClick) {
    const item = document.createElement("li");
    item.textContent = text;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = buttonLabel;
    button.setAttribute("aria-label", buttonName);
    button.addEventListener("click", onClick);
    item.append(button);
    return item;
  }

  function fillList(list, names, render) {
    if (!names.length) {
      const none = document.createElement("li");
      none.className = "muted";
      none.textContent = "none";
      list.replaceChildren(none);
    } else {
      list.replaceChildren(...names.map(render));
    }
  }

  function fillGroup() {
    const editor = byId("group-editor");
    const group = state.groups.find((g) => g.name === state.group);
    if (!group) {
      editor.hidden = true;
      return;
    }
    editor.querySelector("[data-field=name]").textContent = group.name;
    fillList(byId("group-members"), group.members, (user) => itemWithButton(
      user, "Remove", `Remove ${user} from ${group.name}`, () => act(async () => {
        await inhouse.api(groupUrl("members", user), { method: "DELETE" });
        return `${user} left ${group.name}.`;
      })));
    fillList(byId("group-collections"), group.collections, (collection) => itemWithButton(
      collection, "Revoke", `Revoke ${collection} from ${group.name}`, () => act(async () => {
        if (!window.confirm(`Revoke ${group.name}'s access to ${collection}?`)) return null;
        await inhouse.api(groupUrl("collections", collection), { method: "DELETE" });
        return `${group.name} may no longer read ${collection}.`;
      })));
    const select = byId("group-new-member");
    const candidates = state.users.map((u) => u.name).filter((n) => !group.members.includes(n));
    select.replaceChildren(...candidates.map((name) => new Option(name, name)));
    select.disabled = candidates.length === 0;
    byId("group-member-form").querySelector("button").disabled = candidates.length === 0;
    fillLimits(byId("group-quota-form"), group.limits);
  }

  onSubmit("add-group", async (data, form) => {
    const name = String(data.get("name")).trim();
    await inhouse.api("/admin/groups", { method: "POST", json: { name } });
    form.reset();
    state.group = name;
    openEditor("group-editor");
    return `Group ${name} added.`;
  });
  onSubmit("group-member-form", async (data) => {
    const user = String(data.get("user"));
    await inhouse.api(groupUrl("members", user), { method: "PUT" });
    return `${user} joined ${state.group}.`;
  });
  onSubmit("group-grant-form", async (data, form) => {
    const collection = String(data.get("collection")).trim();
    await inhouse.api(groupUrl("collections", collection), { method: "PUT" });
    form.reset();
    return `${state.group} may now read ${collection}.`;
  });
  onSubmit("group-quota-form", async (data) => {
    await inhouse.api(groupUrl(), { method: "PATCH", json: limitsOf(data) });
    return `Quotas of ${state.group} saved.`;
  });
  byId("group-remove").addEventListener("click", () => act(async () => {
    const name = state.group;
    if (!window.confirm(`Remove the group ${name}? Its members stay; its grants and quotas go.`)) {
      return null;
    }
    await inhouse.api(groupUrl(), { method: "DELETE" });
    state.group = null;
    return `Group ${name} removed.`;
  }));

  inhouse.api("/v1/knowledge/collections").then((body) => {
    byId("known-collections").replaceChildren(...body.data.map((c) => new Option(c.name)));
  }).catch(() => { /* suggestions only: the field takes any collection name */ });
});
