/**
 * Whether `promise` settles within `ms` of real time while the test holds timers still (only I/O and
 * immediates run): how a test shows that something waits for a timer, and what it waits for.
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let settled = false;
  void promise.then(() => {
    settled = true;
  });
  const deadline = Date.now() + ms;
  while (!settled && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
  return settled;
}
