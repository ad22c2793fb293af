// Loaded first and not as a module, so it sees every error and policy violation of the page,
// and shows them: a failure nobody sees is a failure nobody reports.
(() => {
  const seen = [];
  window.pageErrors = seen;
  const show = (text) => {
    seen.push(text);
    const banner = document.getElementById('banner');
    if (banner) {
      banner.textContent = text;
      banner.hidden = false;
    }
  };
  window.addEventListener('error', (e) => show(`error: ${e.message}`));
  window.addEventListener('unhandledrejection', (e) => show(`unhandled: ${e.reason && e.reason.message || e.reason}`));
  document.addEventListener('securitypolicyviolation', (e) => show(`blocked by the policy: ${e.violatedDirective} ${e.blockedURI}`));
  const consoleError = console.error.bind(console);
  console.error = (...args) => {
    seen.push(`console: ${args.join(' ')}`);
    consoleError(...args);
  };
})();
