// The audit page's "Verify" button: asks /admin/audit/verify and says what it found.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("verify");
  const result = document.getElementById("verify-result");
  if (!button || !result) return;
  button.addEventListener("click", async () => {
    button.disabled = true;
    inhouse.announce(result, "Verifying…");
    try {
      const found = await inhouse.api("/admin/audit/verify");
      if (found.ok) {
        inhouse.announce(result, `Intact: ${found.entries} entries and ${found.checkpoints} ` +
          "signed checkpoints check out.");
      } else {
        inhouse.announce(result, `Broken at entry ${found.first_bad_seq}: ${found.problem}`, true);
      }
    } catch (error) {
      inhouse.announce(result, `Could not verify: ${error.message}`, true);
    } finally {
      button.disabled = false;
    }
  });
});
