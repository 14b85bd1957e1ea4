// Registration desk: select the rows of a page for a bulk decision; the statistics' scope applies on change.
(() => {
  "use strict";

  const scope = document.querySelector("select.auto-submit");
  if (scope) scope.addEventListener("change", () => scope.form.requestSubmit());

  const bulk = document.getElementById("bulk");
  if (!bulk) return;
  const all = document.getElementById("select-page");
  const boxes = Array.from(document.querySelectorAll("input.pick-one[form=bulk]"));
  const count = document.getElementById("selected-count");
  const approve = document.getElementById("bulk-approve");
  const reject = document.getElementById("bulk-reject");
  const reason = document.getElementById("bulk-reason");

  function selected() {
    return boxes.filter((box) => box.checked).length;
  }

  function update() {
    const n = selected();
    count.textContent = n === 0 ? "None selected" : `${n} selected`;
    all.checked = n > 0 && n === boxes.length;
    all.indeterminate = n > 0 && n < boxes.length;
    approve.disabled = n === 0;
    reject.disabled = n === 0;
    for (const box of boxes) box.closest("tr").classList.toggle("is-selected", box.checked);
  }

  all.addEventListener("change", () => {
    for (const box of boxes) box.checked = all.checked;
    update();
  });
  for (const box of boxes) box.addEventListener("change", update);

  reason.addEventListener("input", () => reason.setCustomValidity(""));
  bulk.addEventListener("submit", (event) => {
    const n = selected();
    const noun = n === 1 ? "registration" : "registrations";
    if (event.submitter === reject) {
      if (!reason.value.trim()) {
        event.preventDefault();
        reason.setCustomValidity("Give the reason for the rejection; the delegates will read it.");
        reason.reportValidity();
        return;
      }
      if (!window.confirm(`Reject ${n} ${noun}? Each delegate is emailed the reason.`)) event.preventDefault();
    } else if (!window.confirm(`Approve ${n} ${noun}? Each gets a badge and an email.`)) {
      event.preventDefault();
    }
  });

  update();
})();
