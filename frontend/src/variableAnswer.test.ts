import { toMetricFindValues } from './variableAnswer';

describe('toMetricFindValues', () => {
  it('maps __text/__value, text/value and plain strings', () => {
    expect(toMetricFindValues([{ __text: 'A', __value: 'a' }, { text: 'B', value: 2 }, 'c', 4, null])).toEqual([
      { text: 'A', value: 'a' },
      { text: 'B', value: '2' },
      { text: 'c', value: 'c' },
      { text: '4', value: '4' },
    ]);
  });

  it('maps a data frame: __text/__value fields, else first (and second) field', () => {
    expect(
      toMetricFindValues({ fields: [{ name: '__value', values: ['x', 'y'] }, { name: '__text', values: ['X', 'Y'] }] })
    ).toEqual([
      { text: 'X', value: 'x' },
      { text: 'Y', value: 'y' },
    ]);
    expect(toMetricFindValues([{ fields: [{ name: 'host', values: ['h1', 'h2'] }] }])).toEqual([
      { text: 'h1', value: 'h1' },
      { text: 'h2', value: 'h2' },
    ]);
  });

  it('maps a table: first column text, second value', () => {
    expect(
      toMetricFindValues([{ type: 'table', columns: [{ text: 'name' }, { text: 'id' }], rows: [['one', 1], ['two', 2]] }])
    ).toEqual([
      { text: 'one', value: '1' },
      { text: 'two', value: '2' },
    ]);
  });

  it('gives nothing for shapes it does not know', () => {
    expect(toMetricFindValues('nope')).toEqual([]);
    expect(toMetricFindValues({ a: 1 })).toEqual([]);
    expect(toMetricFindValues([{ foo: 'bar' }])).toEqual([]);
  });
});
