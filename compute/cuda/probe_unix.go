//go:build linux || freebsd

package cuda

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// driver holds the driver API functions the probe calls.
type driver struct {
	cuInit               func(flags uint32) int32
	cuDriverGetVersion   func(v *int32) int32
	cuDeviceGetCount     func(n *int32) int32
	cuDeviceGet          func(d *int32, ordinal int32) int32
	cuDeviceGetName      func(name *byte, n int32, d int32) int32
	cuDeviceTotalMem     func(bytes *uint64, d int32) int32
	cuDeviceGetAttribute func(v *int32, attr int32, d int32) int32
}

// Compute capability attributes of cuDeviceGetAttribute.
const (
	attrCCMajor = 75
	attrCCMinor = 76
)

// result names the CUDA driver result codes the probe explains.
func result(code int32) string {
	switch code {
	case 1:
		return "CUDA_ERROR_INVALID_VALUE"
	case 2:
		return "CUDA_ERROR_OUT_OF_MEMORY"
	case 3:
		return "CUDA_ERROR_NOT_INITIALIZED"
	case 34:
		return "CUDA_ERROR_STUB_LIBRARY"
	case 35:
		return "CUDA_ERROR_INSUFFICIENT_DRIVER"
	case 100:
		return "CUDA_ERROR_NO_DEVICE"
	case 101:
		return "CUDA_ERROR_INVALID_DEVICE"
	}
	return fmt.Sprintf("CUDA error %d", code)
}

func probe(library string) Report {
	rep := Report{Library: library}
	lib, err := purego.Dlopen(library, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		rep.Reason = fmt.Sprintf("%s cannot be loaded (no NVIDIA driver installed?): %v", library, err)
		return rep
	}
	var d driver
	for _, f := range []struct {
		name string
		fn   any
	}{
		{"cuInit", &d.cuInit}, {"cuDriverGetVersion", &d.cuDriverGetVersion}, {"cuDeviceGetCount", &d.cuDeviceGetCount},
		{"cuDeviceGet", &d.cuDeviceGet}, {"cuDeviceGetName", &d.cuDeviceGetName}, {"cuDeviceTotalMem_v2", &d.cuDeviceTotalMem},
		{"cuDeviceGetAttribute", &d.cuDeviceGetAttribute},
	} {
		sym, err := purego.Dlsym(lib, f.name)
		if err != nil || sym == 0 {
			rep.Reason = fmt.Sprintf("%s has no %s: not a CUDA driver, or one too old", library, f.name)
			return rep
		}
		purego.RegisterFunc(f.fn, sym)
	}
	var version int32
	if rc := d.cuDriverGetVersion(&version); rc != 0 {
		rep.Reason = "cuDriverGetVersion: " + result(rc)
		return rep
	}
	rep.DriverVersion = int(version)
	if version < MinDriverVersion {
		rep.Reason = fmt.Sprintf("the driver supports CUDA %d.%d; fedq needs %d.%d or newer (update the NVIDIA driver)",
			version/1000, version%1000/10, MinDriverVersion/1000, MinDriverVersion%1000/10)
		return rep
	}
	if rc := d.cuInit(0); rc != 0 {
		rep.Reason = "cuInit: " + result(rc)
		if rc == 100 {
			rep.Reason += " (the driver is installed but sees no GPU)"
		}
		return rep
	}
	var n int32
	if rc := d.cuDeviceGetCount(&n); rc != 0 {
		rep.Reason = "cuDeviceGetCount: " + result(rc)
		return rep
	}
	if n == 0 {
		rep.Reason = "the driver sees no GPU"
		return rep
	}
	for i := range n {
		var dev int32
		if rc := d.cuDeviceGet(&dev, i); rc != 0 {
			rep.Reason = fmt.Sprintf("cuDeviceGet(%d): %s", i, result(rc))
			return rep
		}
		var name [256]byte
		var mem uint64
		var major, minor int32
		d.cuDeviceGetName(&name[0], int32(len(name)), dev)
		d.cuDeviceTotalMem(&mem, dev)
		d.cuDeviceGetAttribute(&major, attrCCMajor, dev)
		d.cuDeviceGetAttribute(&minor, attrCCMinor, dev)
		s := unsafe.String(&name[0], len(name))
		s, _, _ = strings.Cut(s, "\x00")
		rep.Devices = append(rep.Devices, Device{Index: int(i), Name: strings.Clone(s), Memory: mem, Major: int(major), Minor: int(minor)})
	}
	return rep
}
