/**
 * Tables from another copy of apache-arrow. A process can hold two: an ES-module script that
 * imports `apache-arrow` gets its ESM build, while dpl (CommonJS) requires the CommonJS build;
 * a project may also install its own version next to dpl's. arrow's `instanceof Table` accepts
 * either (it checks a brand), but the other copy's schemas, types and batches are other
 * classes: `new Table(...)` over them fails ("schemas must be equivalent") and arrow's IPC writer
 * writes bytes that cannot be read back. dpl adopts such a table where it enters: the same
 * buffers under this copy's classes, nothing copied.
 */
import {
  Binary,
  BinaryView,
  Bool,
  Data,
  Date_,
  Decimal,
  Dictionary,
  Duration,
  Field,
  FixedSizeBinary,
  FixedSizeList,
  Float,
  Int,
  Interval,
  LargeBinary,
  LargeList,
  LargeUtf8,
  List,
  Map_,
  Null,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Time,
  Timestamp,
  Type,
  Union,
  Utf8,
  Utf8View,
  Vector,
  type DataType,
} from 'apache-arrow';

/** Whether `x` is a Table of this copy of apache-arrow (not only one that arrow's brand check accepts). */
export function isOwnTable(x: unknown): x is Table {
  return typeof x === 'object' && x !== null && Object.prototype.isPrototypeOf.call(Table.prototype, x);
}

/**
 * `table` as a Table of this copy of apache-arrow: itself when it is one, else the same columns
 * and buffers under this copy's classes.
 * @throws TypeError naming the column whose type cannot be carried over.
 */
export function ownTable(table: Table): Table {
  if (isOwnTable(table)) return table;
  const foreign = table as unknown as ForeignTable;
  const schema = new Schema(foreign.schema.fields.map(ownField), foreign.schema.metadata);
  const struct = new Struct(schema.fields);
  return new Table(schema, foreign.batches.map((b) => new RecordBatch(schema, ownData(b.data, struct) as Data<Struct>)));
}

/** What is read of the other copy's objects: their fields, by arrow's own names. */
interface ForeignField {
  name: string;
  type: ForeignType;
  nullable: boolean;
  metadata: Map<string, string>;
}
interface ForeignType {
  typeId: Type;
  children: ForeignField[];
  toString(): string;
  [k: string]: unknown;
}
interface ForeignData {
  type: ForeignType;
  offset: number;
  length: number;
  nullCount: number;
  valueOffsets: unknown;
  values: unknown;
  nullBitmap: unknown;
  typeIds: unknown;
  children: ForeignData[];
  dictionary?: { data: ForeignData[] };
  variadicBuffers?: ReadonlyArray<Uint8Array>;
}
interface ForeignTable {
  schema: { fields: ForeignField[]; metadata: Map<string, string> };
  batches: { data: ForeignData }[];
}

function ownField(f: ForeignField): Field {
  return new Field(f.name, ownType(f.type, f.name), f.nullable, f.metadata);
}

/** The types without parameters, by id. */
const PLAIN_TYPES = new Map<Type, new () => DataType>([
  [Type.Null, Null],
  [Type.Binary, Binary],
  [Type.LargeBinary, LargeBinary],
  [Type.BinaryView, BinaryView],
  [Type.Utf8, Utf8],
  [Type.LargeUtf8, LargeUtf8],
  [Type.Utf8View, Utf8View],
  [Type.Bool, Bool],
]);

function ownType(t: ForeignType, column: string): DataType {
  const Plain = PLAIN_TYPES.get(t.typeId);
  if (Plain !== undefined) return new Plain();
  const n = (k: string): number => t[k] as number;
  // A type's typeId is its family's (an Int32's is Type.Int): the concrete ids never come here.
  // eslint-disable-next-line @typescript-eslint/switch-exhaustiveness-check -- the default refuses the rest
  switch (t.typeId) {
    case Type.Int:
      return new Int(t.isSigned as boolean, n('bitWidth') as 8 | 16 | 32 | 64);
    case Type.Float:
      return new Float(n('precision'));
    case Type.Decimal:
      return new Decimal(n('scale'), n('precision'), n('bitWidth'));
    case Type.Date:
      return new Date_(n('unit'));
    case Type.Time:
      return new Time(n('unit'), n('bitWidth') as 32 | 64);
    case Type.Timestamp:
      return new Timestamp(n('unit'), t.timezone as string | null);
    case Type.Interval:
      return new Interval(n('unit'));
    case Type.Duration:
      return new Duration(n('unit'));
    case Type.FixedSizeBinary:
      return new FixedSizeBinary(n('byteWidth'));
    case Type.List:
      return new List(ownField(t.children[0]!));
    case Type.LargeList:
      return new LargeList(ownField(t.children[0]!));
    case Type.FixedSizeList:
      return new FixedSizeList(n('listSize'), ownField(t.children[0]!));
    case Type.Struct:
      return new Struct(t.children.map(ownField));
    case Type.Map:
      return new Map_(ownField(t.children[0]!) as Field<Struct<{ key: DataType; value: DataType }>>, t.keysSorted as boolean);
    case Type.Union:
      return new Union(n('mode'), t.typeIds as Int32Array, t.children.map(ownField));
    case Type.Dictionary:
      return new Dictionary(
        ownType(t.dictionary as ForeignType, column),
        ownType(t.indices as ForeignType, column) as ConstructorParameters<typeof Dictionary>[1],
        t.id as number | bigint,
        t.isOrdered as boolean,
      );
    default:
      throw new TypeError(
        `column ${JSON.stringify(column)} of a table from another copy of apache-arrow has type ${t.toString()}, which dpl cannot carry over; ` +
          'build the table with the apache-arrow that @dpl/core uses (one installed copy, imported the same way)',
      );
  }
}

function ownData(d: ForeignData, type: DataType): Data {
  const children = d.children.map((c, i) => ownData(c, (type.children[i] as Field).type as DataType));
  const dictionary = d.dictionary === undefined ? undefined : new Vector(d.dictionary.data.map((x) => ownData(x, (type as Dictionary).dictionary as DataType)));
  // Buffers in arrow's BufferType order: offsets, values, validity, type ids.
  const buffers = [d.valueOffsets, d.values, d.nullBitmap, d.typeIds] as unknown as ConstructorParameters<typeof Data>[4];
  return new Data(type, d.offset, d.length, d.nullCount, buffers, children, dictionary, d.variadicBuffers);
}
