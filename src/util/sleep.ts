/**
 * Resolves after `ms`, or rejects with the signal's reason when it aborts first. With `wakeable`,
 * it also resolves as soon as the `wake` function it is handed is called; the function `wakeable`
 * returns is called once the sleep is over, however it ended (to forget the wake function).
 */
export function sleep(ms: number, signal?: AbortSignal, wakeable?: (wake: () => void) => () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const end = (settle: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      forget?.();
      settle();
    };
    const onAbort = () => end(() => reject(signal?.reason as Error));
    const wake = () => end(resolve);
    const timer = setTimeout(wake, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    // `wakeable` keeps `wake` for later; it must not call it before it returns.
    const forget = wakeable?.(wake);
  });
}
