import FKPAnnotate
import FKPExport
import FKPTestSupport
import Foundation
import XCTest

final class AnnotateTests: XCTestCase {
    func testShardParsing() {
        XCTAssertEqual(Shard("2/3")?.select([1, 2, 3, 4, 5, 6]), [2, 5])
        XCTAssertNil(Shard("4/3"))
        XCTAssertNil(Shard("0/3"))
    }
}
