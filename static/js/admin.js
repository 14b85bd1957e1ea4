// The secretariat's administration pages: filters that apply on change, confirmation before deleting.
(function () {
  "use strict";

  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () {
      if (select.form) select.form.requestSubmit();
    });
  });

  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  // A role's Change button is useful only once another role is chosen.
  document.querySelectorAll(".role-form").forEach(function (form) {
    var select = form.querySelector("select[name=role]");
    var button = form.querySelector("button");
    var sync = function () { button.disabled = select.value === select.dataset.current; };
    select.addEventListener("change", sync);
    sync();
  });
})();
