// Registration form: show the Party list to Party delegates and the organization field to observers.
(() => {
  "use strict";
  const category = document.getElementById("category");
  if (!category) return;
  const party = document.getElementById("party").closest(".field");
  const organization = document.getElementById("organization").closest(".field");

  function update() {
    const isParty = category.value === "party";
    party.hidden = !isParty;
    organization.hidden = isParty;
  }

  category.addEventListener("change", update);
  update();
})();
