// ESLint 9 flat config: typescript-eslint's type-aware rules, chiefly the promise rules (a forgotten await or an
// async callback where a sync one is expected loses errors silently in a server).
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/', '.data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        // tests/tsconfig.json covers src, models, bots, webhooks, scripts and the tests themselves.
        project: ['./tests/tsconfig.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Fastify plugins and our sender interfaces are async by contract even when a body has nothing to await;
      // `async` also turns a throw into a rejection. Marking each one would be noise.
      '@typescript-eslint/require-await': 'off',
      // Advisory, not a defect: the hits are casts that restate a type (`as Channel`, `user!`), and removing them
      // would touch lines other work is changing.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
    },
  },
  {
    // light-my-request's `response.json()` returns `any` by design; tests assert on it with expect().
    files: ['tests/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
    },
  },
  {
    // The login page's own script runs in the browser.
    files: ['src/login-page/assets/**/*.js'],
    languageOptions: { globals: globals.browser },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: { ...tseslint.configs.disableTypeChecked.languageOptions, globals: { process: 'readonly', console: 'readonly' } },
  },
);
