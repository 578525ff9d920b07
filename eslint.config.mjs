// ESLint flat config: typescript-eslint's type-checked rules plus the project's own (STYLE.md).
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import jest from 'eslint-plugin-jest';

export default tseslint.config(
  {
    // test/fixtures holds deliberately broken pipeline modules for the CLI's error tests.
    ignores: ['**/dist/**', '**/generated/**', 'node_modules/**', 'bench/.*', 'coverage/**', 'test/fixtures/**', '**/*.js', '**/*.mjs', '**/*.cjs'],
  },
  {
    files: ['**/*.ts'],
    extends: [...tseslint.configs.recommended],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      eqeqeq: ['error', 'always'],
    },
  },
  {
    files: ['packages/*/src/**/*.ts'],
    extends: [...tseslint.configs.recommendedTypeChecked],
    plugins: { 'import-x': importX },
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    settings: {
      'import-x/resolver': { typescript: { project: 'packages/*/tsconfig.json', noWarnOnMultipleProjects: true }, node: true },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import-x/no-cycle': 'error',
      'import-x/no-extraneous-dependencies': 'error',
      'no-restricted-imports': [
        'error',
        { patterns: ['@dpl/*/src/*', '@dpl/*/dist/*', '**/generated/*'] },
      ],
      'no-console': 'error',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // wire is the one package that may import the generated types.
    files: ['packages/wire/src/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['@dpl/*/src/*', '@dpl/*/dist/*'] }],
    },
  },
  {
    files: ['**/test/**/*.ts', 'test/**/*.ts'],
    extends: [jest.configs['flat/recommended']],
    rules: {
      'jest/no-focused-tests': 'error',
      'jest/expect-expect': 'off',
      'jest/no-conditional-expect': 'off',
      'jest/no-standalone-expect': 'off',
    },
  },
);
