// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Forbids a folder's files to import the folders above it (and, optionally, some packages). */
function layer(folder, above, packages = []) {
  return [
    {
      files: [`${folder}/**/*.ts`],
      rules: {
        'no-restricted-imports': ['error', { patterns: [...above.map(f => ({ group: [`**/${f}/**`], message: `${folder}/ must not depend on ${f}/: dependencies point config → src → queues → workers | http → cli.` })), ...packages] }],
        // The same for import(): lazy loading must not be a way around the layers.
        'no-restricted-syntax': ['error', { selector: `ImportExpression[source.value=/(^|\\/)(${above.join('|')})\\//]`, message: `${folder}/ must not load ${above.join('/, ')}/ (not even lazily): dependencies point config → src → queues → workers | http → cli.` }],
      },
    },
  ];
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bin/', 'eslint.config.js', 'fixtures/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'Only config/ reads the environment: take values from loadConfig().' }],
    },
  },
  {
    // examples/ are stand-alone scripts a user runs, outside the product's layers: they read their own environment.
    files: ['config/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts', 'examples/**/*.ts'],
    rules: { 'no-restricted-properties': 'off' },
  },
  // Dependencies point one way: config → src → queues → workers | http → cli (docs/architecture.md).
  ...layer('config', ['src', 'queues', 'workers', 'http', 'cli']),
  ...layer('src', ['queues', 'workers', 'http', 'cli'], [{ group: ['bullmq', 'piscina', 'express', '@bull-board/*', 'commander'], message: 'src/ is the domain: BullMQ, piscina, HTTP frameworks and the command line belong to the layers above it.' }]),
  ...layer('queues', ['workers', 'http', 'cli']),
  ...layer('workers', ['http', 'cli']),
  ...layer('http', ['workers', 'cli']),
  {
    // The Python sandbox's child process and interpreter threads are plain JavaScript (// @ts-check): they run under
    // Node's permission model, which cannot load TypeScript through tsx. They drive Pyodide's untyped objects.
    files: ['src/sandbox/python/*.mjs'],
    languageOptions: { globals: { process: 'readonly', performance: 'readonly', Buffer: 'readonly', SharedArrayBuffer: 'readonly', Atomics: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', globalThis: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-unused-expressions': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
