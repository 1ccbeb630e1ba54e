/* Sign-in: keep the pasted token (or one handed over in the URL fragment by `tdr serve`) and go to the home page. */
"use strict";

(() => {
  const form = document.getElementById("login-form");
  const input = document.getElementById("token");
  const error = document.getElementById("login-error");

  async function signIn(value) {
    error.hidden = true;
    TDR.setToken(value.trim());
    try {
      const who = await TDR.request("/me", { noRedirect: true });
      sessionStorage.setItem("tdr_me", JSON.stringify(who));
      TDR.keepUntil(who.expires_at);
      location.assign(TDR.homeFor(who));
    } catch (e) {
      TDR.forget();
      error.textContent = e.status === 401 ? "令牌无效或已失效，请向培训管理员重新申请。" : e.message;
      error.hidden = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(input.value);
  });

  // A fragment never reaches the server or its logs; drop it from the address bar once read.
  const handed = new URLSearchParams(location.hash.slice(1)).get("token");
  if (handed) {
    history.replaceState(null, "", location.pathname);
    signIn(handed);
  }
})();
