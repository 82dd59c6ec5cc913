import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * Installs Debian packages a test needs from the system (Chromium, python3-websockets) when this is a
 * Debian/Ubuntu machine and we are root — what CI and a fresh machine need; `npm ci` cannot install
 * them. Returns false (installing nothing) elsewhere, so the caller says what to install.
 */
export function aptInstall(packages: readonly string[], why: string): boolean {
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) return false;
  process.stderr.write(`${why}: installing Debian's ${packages.join(', ')} (apt-get)…\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', ...packages], { stdio: 'inherit', env });
  return true;
}
