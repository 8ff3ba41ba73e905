// The sign-in form: POST /admin/login, keep the CSRF token, go where the user was headed.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    inhouse.announce(error, "");
    const data = new FormData(form);
    try {
      const body = await inhouse.api("/admin/login", {
        method: "POST",
        json: { name: data.get("name"), password: data.get("password") },
        toSignIn: false,
      });
      inhouse.rememberCsrf(body.csrf_token);
      const next = form.dataset.next || "/";
      // only a path on this site (the server checks it too): "//host", "/\\host" and control
      // characters, which browsers drop ("/\t/host"), would lead elsewhere
      window.location.assign(/^\/(?![\/\\])[^\\\x00-\x20\x7f]*$/.test(next) ? next : "/");
    } catch (failure) {
      inhouse.announce(error, failure.message || "Sign-in failed.", true);
    }
  });
});
