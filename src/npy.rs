//! NumPy `.npy` files (format 1.0, little-endian float32, C order), so transformed matrices
//! open with `numpy.load` as the Python original's did.

use std::io::Write;

/// Writes a `rows × cols` float32 matrix: `encode` appends each row's little-endian bytes.
pub fn write_f32_rows<R>(
    out: &mut dyn Write,
    rows: usize,
    cols: usize,
    items: impl Iterator<Item = R>,
    encode: impl Fn(R, &mut Vec<u8>),
) -> std::io::Result<()> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header + newline is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.extend(std::iter::repeat_n(' ', unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    let mut buffer = Vec::with_capacity(1 << 16);
    for item in items {
        encode(item, &mut buffer);
        if buffer.len() >= 1 << 16 {
            out.write_all(&buffer)?;
            buffer.clear();
        }
    }
    out.write_all(&buffer)
}

/// Reads a float32 matrix written by [`write_f32`]: (rows, cols, values).
pub fn read_f32(bytes: &[u8]) -> Result<(usize, usize, Vec<f32>), String> {
    let body = bytes.strip_prefix(b"\x93NUMPY\x01\x00").ok_or("not a .npy 1.0 file")?;
    let header_len = u16::from_le_bytes([body[0], body[1]]) as usize;
    let header = std::str::from_utf8(&body[2..2 + header_len]).map_err(|e| e.to_string())?;
    if !header.contains("'<f4'") || !header.contains("False") {
        return Err(format!("unsupported array: {header}"));
    }
    let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or("no shape")?;
    let dims: Vec<usize> = shape.split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let [rows, cols] = dims[..] else { return Err(format!("not a matrix: ({shape})")) };
    let data = &body[2 + header_len..];
    if data.len() != rows * cols * 4 {
        return Err(format!("expected {} bytes of data, found {}", rows * cols * 4, data.len()));
    }
    let values = data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    Ok((rows, cols, values))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_with_an_aligned_header() {
        let mut out = Vec::new();
        let rows = [[1.0f32, 2.0, 3.0], [4.0, 5.0, -0.5]];
        super::write_f32_rows(&mut out, 2, 3, rows.iter(), |row, bytes| {
            row.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()))
        })
        .unwrap();
        assert_eq!((out.len() - 6 * 4) % 64, 0);
        assert_eq!(super::read_f32(&out).unwrap(), (2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, -0.5]));
    }
}
