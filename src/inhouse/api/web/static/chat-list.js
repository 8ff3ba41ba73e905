// The chat page's sidebar, the user's conversations (search, rename, delete with a
// confirmation), and the small DOM helpers both chat scripts share. Loaded before chat.js.
"use strict";

const chatParts = (() => {
  const UNTITLED = "Untitled chat";

  // A new element with properties ("text": textContent) and children; never parses markup.
  function element(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  function conversationPath(id, tail = "") {
    return `/v1/conversations/${encodeURIComponent(id)}${tail}`;
  }

  // The sidebar list. `current()`: the open conversation or null; `onTitle(conversation)`:
  // the open conversation's title changed; `say(text, isError)`: the page's status line.
  function sidebar({ current, onTitle, say }) {
    const ui = {
      search: document.getElementById("conversation-search"),
      list: document.getElementById("conversation-list"),
      listEmpty: document.getElementById("conversation-empty"),
    };
    const isOpen = (conversation) => Boolean(current() && current().id === conversation.id);

    let asked = 0; // the newest listing asked for: an older answer arriving late is dropped

    async function loadList() {
      const query = ui.search.value.trim();
      const path = "/v1/conversations?limit=100" + (query ? "&q=" + encodeURIComponent(query) : "");
      const ask = ++asked;
      try {
        const body = await inhouse.api(path);
        if (ask !== asked) return;
        const open = body.data.find(isOpen);
        if (open && open.title !== current().title) onTitle(open); // a first message titled it
        renderList(body.data);
      } catch (failure) {
        say(`Could not list the conversations: ${failure.message}`, true);
      }
    }

    function renderList(conversations) {
      ui.list.replaceChildren(...conversations.map(listItem));
      ui.listEmpty.hidden = conversations.length > 0;
      ui.listEmpty.textContent = ui.search.value.trim() ? "No conversation matches." : "No conversations yet.";
    }

    function listItem(conversation) {
      const item = element("li", { className: "conversation" });
      showListEntry(item, conversation);
      return item;
    }

    function showListEntry(item, conversation) {
      const title = conversation.title || UNTITLED;
      const link = element("a", { href: `/c/${encodeURIComponent(conversation.id)}`, text: title });
      if (isOpen(conversation)) link.setAttribute("aria-current", "page");
      const rename = element("button", { type: "button", className: "secondary small", "aria-label": `Rename “${title}”`, text: "Rename" });
      const remove = element("button", { type: "button", className: "secondary small", "aria-label": `Delete “${title}”`, text: "Delete" });
      rename.addEventListener("click", () => showRename(item, conversation));
      remove.addEventListener("click", () => showDeleteConfirmation(item, conversation));
      item.replaceChildren(link, element("span", { className: "conversation-actions" }, rename, remove));
    }

    function showRename(item, conversation) {
      const id = `rename-${conversation.id}`;
      const input = element("input", { id, maxlength: "200", value: conversation.title || "" });
      const save = element("button", { type: "submit", className: "small", text: "Save" });
      const cancel = element("button", { type: "button", className: "secondary small", text: "Cancel" });
      const form = element("form", { className: "rename" },
        element("label", { for: id, text: "New title" }), input, save, cancel);
      cancel.addEventListener("click", () => { showListEntry(item, conversation); item.querySelector("a").focus(); });
      form.addEventListener("keydown", (event) => { if (event.key === "Escape") cancel.click(); });
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          const changed = await inhouse.api(conversationPath(conversation.id), { method: "PATCH", json: { title: input.value.trim() } });
          Object.assign(conversation, changed);
          if (isOpen(conversation)) onTitle(conversation);
          showListEntry(item, conversation);
          item.querySelector("a").focus();
          say("Renamed.");
        } catch (failure) {
          say(`Could not rename: ${failure.message}`, true);
        }
      });
      item.replaceChildren(form);
      input.focus();
    }

    function showDeleteConfirmation(item, conversation) {
      const title = conversation.title || UNTITLED;
      const confirm = element("button", { type: "button", className: "danger small", text: "Delete" });
      const cancel = element("button", { type: "button", className: "secondary small", text: "Keep" });
      cancel.addEventListener("click", () => { showListEntry(item, conversation); item.querySelector("a").focus(); });
      confirm.addEventListener("click", async () => {
        try {
          await inhouse.api(conversationPath(conversation.id), { method: "DELETE" });
        } catch (failure) {
          say(`Could not delete: ${failure.message}`, true);
          return;
        }
        if (isOpen(conversation)) {
          window.location.assign("/");
          return;
        }
        say(`Deleted “${title}”.`);
        loadList();
      });
      item.replaceChildren(element("p", { className: "confirm", text: `Delete “${title}” for good?` }),
        element("span", { className: "conversation-actions" }, confirm, cancel));
      confirm.focus();
    }

    let timer = null;
    ui.search.addEventListener("input", () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(loadList, 250);
    });
    document.getElementById("conversation-search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadList();
    });
    const toggle = document.getElementById("sidebar-toggle");
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") !== "true";
      toggle.setAttribute("aria-expanded", String(open));
      document.getElementById("chat-sidebar").classList.toggle("open", open);
    });
    document.getElementById("new-chat").addEventListener("click", () => window.location.assign("/"));
    return { load: loadList };
  }

  return { UNTITLED, element, conversationPath, sidebar };
})();
