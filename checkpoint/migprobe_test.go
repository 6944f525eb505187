package checkpoint

import "testing"

func BenchmarkMigrateSmall(b *testing.B) {
	migrateBenchRecords = 100001
	BenchmarkMigratePatientIndex(b)
}
