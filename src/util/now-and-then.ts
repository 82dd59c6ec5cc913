/**
 * A word said at most once in a while, however often its occasion comes: a Redis away makes every queue's connection
 * report each reconnection attempt (a stranger's probe counted 565 error lines for a 30 s restart, 1,462 on the
 * dashboard in 2 min), a full Redis every refused write.
 */
export interface NowAndThen {
  /**
   * Counts one occasion. Returns 0 while the last word is younger than the interval; otherwise the number of occasions
   * the word now said stands for (this one and those kept quiet since the last word), and the interval starts again.
   */
  take(now?: number): number;
}

/** A word said at most every `everyMs` milliseconds; the first occasion is said at once. */
export function nowAndThen(everyMs: number): NowAndThen {
  let saidAt = Number.NEGATIVE_INFINITY;
  let quiet = 0;
  return {
    take(now = Date.now()) {
      if (now - saidAt < everyMs) {
        quiet += 1;
        return 0;
      }
      const count = quiet + 1;
      saidAt = now;
      quiet = 0;
      return count;
    },
  };
}
