// Rewrites the README's configuration reference from the options table (run after `npm run build`).
const fs = require('node:fs');
const path = require('node:path');
const { optionsMarkdown } = require('../dist/config');

const file = path.join(__dirname, '..', 'README.md');
const text = fs.readFileSync(file, 'utf8');
const updated = text.replace(
  /<!-- config:start -->[\s\S]*<!-- config:end -->/,
  `<!-- config:start -->\n${optionsMarkdown()}\n<!-- config:end -->`,
);
fs.writeFileSync(file, updated);
