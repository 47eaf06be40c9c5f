(function () {
  var form = document.querySelector('form[data-ceremony]');
  var data = document.getElementById('passkey-options');
  var status = document.getElementById('passkey-status');
  if (!form || !data) { return; }
  var api = window.PublicKeyCredential;
  if (!api || !api.parseRequestOptionsFromJSON || !api.parseCreationOptionsFromJSON) {
    form.hidden = true;
    return;
  }
  form.addEventListener('submit', function (event) {
    if (form.elements.credential.value) { return; }
    event.preventDefault();
    var options = JSON.parse(data.textContent);
    var create = form.dataset.ceremony === 'create';
    var ceremony = create
      ? navigator.credentials.create({ publicKey: api.parseCreationOptionsFromJSON(options) })
      : navigator.credentials.get({ publicKey: api.parseRequestOptionsFromJSON(options) });
    ceremony.then(function (credential) {
      form.elements.credential.value = JSON.stringify(credential.toJSON());
      form.submit();
    }, function () {
      status.textContent = 'No passkey was used. Try again, or use another way to sign in.';
      status.focus();
    });
  });
}());
