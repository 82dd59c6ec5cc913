import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { aptInstall } from './apt.js';

/**
 * A pure-Python mpmath package folder (the one holding __init__.py) for the tests that supply it to the
 * Python sandbox: ENVFLEET_TEST_MPMATH when set, else Debian's python3-mpmath (installed with apt-get
 * when this is a Debian/Ubuntu machine and we are root). Null when there is none: the caller skips and
 * says how to get one.
 */
export function mpmathPackage(why: string): string | null {
  const given = process.env['ENVFLEET_TEST_MPMATH'];
  if (given) return existsSync(join(given, '__init__.py')) ? given : null;
  const fromDpkg = (): string | null => {
    try {
      const files = execFileSync('dpkg', ['-L', 'python3-mpmath'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n');
      const init = files.find(f => /\/mpmath\/__init__\.py$/.test(f));
      return init ? dirname(init) : null;
    } catch {
      return null;
    }
  };
  return fromDpkg() ?? (aptInstall(['python3-mpmath'], why) ? fromDpkg() : null);
}

export const MPMATH_MISSING = 'no pure-Python mpmath: set ENVFLEET_TEST_MPMATH to an mpmath package folder (the one holding __init__.py), or install Debian\'s python3-mpmath';
