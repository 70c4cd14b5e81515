import { useEffect, useState } from './vendor/preact-htm.mjs';

/**
 * Runs `load()` (a function defined once, outside the component) now and every `intervalMs` while
 * the page is shown; answers `{ data, error }`.
 * The views without a live stream (the rollouts table, agents) stay fresh this way.
 */
export function usePolling(load, intervalMs) {
  const [state, setState] = useState({ data: null, error: null });
  useEffect(() => {
    let stopped = false;
    const run = () =>
      load().then(
        (data) => !stopped && setState({ data, error: null }),
        (error) => !stopped && setState((previous) => ({ data: previous.data, error })),
      );
    void run();
    const timer = setInterval(run, intervalMs);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [load, intervalMs]);
  return state;
}
