// config.js — deployment settings for the Enviromon dashboard. Edit this file when the page is
// served from somewhere other than the function app (an Azure Storage static website, say);
// the page URL's ?api= and ?stale= override it. See docs/dashboard.md.
export default {
  // The function app's base URL, e.g. 'https://enviromon-fn.azurewebsites.net'.
  // Empty: the page's own origin (devhost start serves the page and /api together).
  api: '',
  // A device that sent nothing for this many seconds is shown as stale.
  staleSeconds: 60,
  // How many devices the charts show at once, and how many (the first by id) they show when
  // none is selected (0: none).
  maxCharted: 10,
  autoChart: 4,
};
