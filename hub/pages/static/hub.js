// Live updates of a family page: when the hub's change feed reports an entry the reader may see, the page's
// parts are fetched again and replaced (the sharing decisions that follow an entry come moments later, so a
// second and third refresh follow). Without JavaScript the page is complete; reloading shows the same.
const live = document.getElementById("live-content");
if (live && window.EventSource) {
  const status = document.getElementById("live-status");
  const refresh = async () => {
    const answer = await fetch(window.location.href, { headers: { Accept: "text/html" } });
    if (!answer.ok) return;
    const next = new DOMParser().parseFromString(await answer.text(), "text/html").getElementById("live-content");
    if (next) { live.innerHTML = next.innerHTML; status.textContent = document.documentElement.lang === "cy" ? "Diweddarwyd" : "Updated"; }
  };
  const feed = new EventSource(live.dataset.live);
  const onChange = () => { refresh(); setTimeout(refresh, 1500); setTimeout(refresh, 4000); };
  feed.onmessage = onChange;
  ["added", "updated", "joined", "left"].forEach((kind) => feed.addEventListener(kind, onChange));
}
