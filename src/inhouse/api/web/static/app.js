// Shared by every page: API calls with the session's CSRF token, sign-out, the menu toggle.
"use strict";

const inhouse = (() => {
  const CSRF_KEY = "inhouse.csrf";

  class ApiError extends Error {
    constructor(status, body) {
      const message = (body && body.error && body.error.message) || `HTTP ${status}`;
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  function csrfToken() {
    return window.localStorage.getItem(CSRF_KEY) || "";
  }

  function rememberCsrf(token) {
    window.localStorage.setItem(CSRF_KEY, token);
  }

  // fetch() to the API as the signed-in user; JSON in and out; throws ApiError on failure.
  // A 401 (the session ended) goes to the sign-in page unless `toSignIn` is false.
  async function api(path, { method = "GET", json, body, signal, headers = {}, toSignIn = true } = {}) {
    const sent = { method, signal, credentials: "same-origin", headers: { ...headers } };
    if (method !== "GET" && method !== "HEAD") sent.headers["X-CSRF-Token"] = csrfToken();
    if (json !== undefined) {
      sent.headers["Content-Type"] = "application/json";
      sent.body = JSON.stringify(json);
    } else if (body !== undefined) {
      sent.body = body;
    }
    const response = await fetch(path, sent);
    if (response.status === 401 && toSignIn) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      throw new ApiError(401, null);
    }
    if (!response.ok) {
      let parsed = null;
      try { parsed = await response.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, parsed);
    }
    const type = response.headers.get("content-type") || "";
    return type.includes("application/json") ? response.json() : response;
  }

  // The events of a text/event-stream response, as parsed JSON objects, until [DONE].
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }

  // A status line for screen readers and sighted users alike.
  function announce(element, text, isError = false) {
    element.textContent = text;
    element.hidden = !text;
    element.classList.toggle("error", isError);
  }

  function setupChrome() {
    const toggle = document.querySelector(".nav-toggle");
    const nav = document.getElementById("site-nav");
    if (toggle && nav) {
      toggle.addEventListener("click", () => {
        const open = toggle.getAttribute("aria-expanded") === "true";
        toggle.setAttribute("aria-expanded", String(!open));
        nav.classList.toggle("open", !open);
      });
    }
    const signOut = document.querySelector("[data-sign-out]");
    if (signOut) {
      signOut.addEventListener("submit", async (event) => {
        event.preventDefault();
        try { await api("/admin/logout", { method: "POST" }); } catch (_) { /* signed out anyway */ }
        window.localStorage.removeItem(CSRF_KEY);
        window.location.assign("/login");
      });
    }
  }

  document.addEventListener("DOMContentLoaded", setupChrome);
  return { api, events, announce, rememberCsrf, csrfToken, ApiError };
})();
