//! DLPack `DLDataType` to `DType` mapping (the pointer reading lives in `capi`).

use crate::core::dtype::DType;
use crate::core::status::{Error, Result, Status};

// DLDataTypeCode values (dlpack.h, v1.1).
const K_DL_INT: u8 = 0;
const K_DL_UINT: u8 = 1;
const K_DL_FLOAT: u8 = 2;
const K_DL_BFLOAT: u8 = 4;
const K_DL_FLOAT8_E4M3FN: u8 = 10;
const K_DL_FLOAT8_E4M3FNUZ: u8 = 11;
const K_DL_FLOAT8_E5M2: u8 = 12;

/// Maps a DLPack `(code, bits, lanes)` triple to a pagedkv dtype.
pub fn dtype_from_dlpack(code: u8, bits: u8, lanes: u16) -> Result<DType> {
    if lanes != 1 {
        return Err(Error::new(Status::InvalidDtype, format!("dl_tensor.dtype.lanes = {lanes}, expected 1")));
    }
    let d = match (code, bits) {
        (K_DL_FLOAT, 32) => DType::F32,
        (K_DL_FLOAT, 16) => DType::F16,
        (K_DL_BFLOAT, 16) => DType::BF16,
        (K_DL_UINT, 8) => DType::U8,
        (K_DL_INT, 32) => DType::I32,
        (K_DL_INT, 64) => DType::I64,
        (K_DL_FLOAT8_E4M3FN, 8) => DType::F8E4M3FN,
        (K_DL_FLOAT8_E4M3FNUZ, 8) => DType::F8E4M3FNUZ,
        (K_DL_FLOAT8_E5M2, 8) => DType::F8E5M2,
        _ => {
            return Err(Error::new(
                Status::InvalidDtype,
                format!(
                    "dl_tensor.dtype = (code {code}, bits {bits}) has no pagedkv equivalent (expected float32/16, \
                     bfloat16, uint8, int32, int64 or float8)"
                ),
            ));
        }
    };
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_known_types_and_rejects_others() {
        assert_eq!(dtype_from_dlpack(2, 16, 1).unwrap(), DType::F16);
        assert_eq!(dtype_from_dlpack(4, 16, 1).unwrap(), DType::BF16);
        assert_eq!(dtype_from_dlpack(0, 64, 1).unwrap(), DType::I64);
        assert_eq!(dtype_from_dlpack(2, 64, 1).unwrap_err().status, Status::InvalidDtype);
        assert_eq!(dtype_from_dlpack(2, 16, 2).unwrap_err().status, Status::InvalidDtype);
    }
}
