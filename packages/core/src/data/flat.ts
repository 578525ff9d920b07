/**
 * A reader of the little-endian flatbuffers that Arrow IPC messages carry as metadata: the IPC
 * reader reads record batch headers with it, the writer finds where its message templates hold
 * their numbers.
 * @internal
 */
/** Reads little-endian flatbuffer fields of one message's metadata. */
export class Flat {
  private readonly view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  u8(at: number): number {
    return this.view.getUint8(at);
  }

  u32(at: number): number {
    return this.view.getUint32(at, true);
  }

  /** A 64-bit integer as a number, or NaN past 2^53. */
  i64(at: number): number {
    const hi = this.view.getInt32(at + 4, true);
    if (hi >= 0x20_0000 || hi < -0x20_0000) return NaN;
    return hi * 0x1_0000_0000 + this.view.getUint32(at, true);
  }

  /** Where field `slot` of the table at `table` is, or 0 when it is absent. */
  field(table: number, slot: number): number {
    const vtable = table - this.view.getInt32(table, true);
    const size = this.view.getUint16(vtable, true);
    const o = 4 + 2 * slot < size ? this.view.getUint16(vtable + 4 + 2 * slot, true) : 0;
    return o === 0 ? 0 : table + o;
  }

  /** The table or vector an offset field points to. */
  deref(at: number): number {
    return at + this.u32(at);
  }
}
