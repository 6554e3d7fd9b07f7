import { describe, expect, it } from 'vitest';
import packageJson from '../package.json' with { type: 'json' };

describe('the platform the suite runs on', () => {
  it('is Node 22.12 or later, as package.json engines declares (npm scripts bring Node 24 through the `node` package)', () => {
    const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
    expect(packageJson.engines.node).toBe('>=22.12');
    expect(major > 22 || (major === 22 && minor >= 12), `running on Node ${process.versions.node}`).toBe(true);
  });
});
