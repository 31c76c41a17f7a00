// Core benchmarks: EventBus deliveries and loop-bound actor calls. Build with -c release.
// Run: swift build -c release --product core-bench && .build/release/core-bench
import Core

#if canImport(Glibc)
import Glibc
#endif

var name = utsname()
uname(&name)
let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
print("machine: \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, Linux \(release)")
runEventBusBench()
print("")
await runLoopBench()
