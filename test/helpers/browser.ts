import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { aptInstall } from './apt.js';

const NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];

/** The first of the usual browser commands found on PATH (or CHROMIUM_PATH when set). */
function findChromium(): string | null {
  const given = process.env['CHROMIUM_PATH'];
  if (given) return existsSync(given) ? given : null;
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) for (const name of NAMES) if (dir && existsSync(join(dir, name))) return join(dir, name);
  return null;
}

/**
 * A Chromium for the browser tests (playwright-core never downloads one). When none is installed and
 * this is a Debian/Ubuntu machine where we are root, installs Debian's `chromium` package (what CI
 * and a fresh machine need); otherwise says what to install.
 */
export function chromiumPath(): string {
  const found = findChromium();
  if (found) return found;
  if (aptInstall(['chromium'], 'browser tests: no Chromium found')) {
    const installed = findChromium();
    if (installed) return installed;
  }
  throw new Error(
    'the browser tests need Chromium and none was found on PATH. Install it (Debian/Ubuntu: apt-get install chromium; macOS: brew install --cask chromium) or set CHROMIUM_PATH to a Chromium or Chrome binary.',
  );
}
