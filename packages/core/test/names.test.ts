import { closestName, didYouMean } from '../src/internal/names';

describe('closestName', () => {
  it('finds a name a typo away: a letter left out, added, changed, or two swapped; case aside', () => {
    const known = ['iterations', 'seed', 'decimals'];
    expect(closestName('iteratons', known)).toBe('iterations');
    expect(closestName('iterrations', known)).toBe('iterations');
    expect(closestName('iteratiens', known)).toBe('iterations');
    expect(closestName('itreations', known)).toBe('iterations');
    expect(closestName('Seed', known)).toBe('seed');
  });

  it('suggests nothing far off, nothing for an exact name, and the nearest of several', () => {
    expect(closestName('xyz', ['iterations', 'seed'])).toBeUndefined();
    expect(closestName('seed', ['seed'])).toBeUndefined();
    expect(closestName('batch', ['batchSize', 'batches', 'match'])).toBe('match');
    expect(didYouMean('sed', ['seed'])).toBe(' (did you mean "seed"?)');
    expect(didYouMean('q', ['seed'])).toBe('');
  });
});
